"""Pixel masks from an SDSS fpM file (MODEL.md 7.3).

HDU 11 names the mask planes (rows ``defName = S_MASKTYPE``, ``attributeName = S_MASK_*``,
``Value`` = plane number); plane v is the table in HDU v + 1, one row per object mask.  As in
Celeste, each object's whole bounding box (0-based, inclusive ``cmin..cmax`` along FITS x and
``rmin..rmax`` along FITS y) is masked, which over-masks a little.  fpM coordinates are those of
the frame (checked on 2583/2/136: saturated boxes sit on the brightest pixels at zero offset).
"""

from pathlib import Path

import numpy as np

from celestecli.sdss.fitsio import FitsFile

MASKED_PLANES = ("S_MASK_INTERP", "S_MASK_SATUR", "S_MASK_CR", "S_MASK_GHOST")
PLANE_TABLE_HDU = 11
BOX_COLUMNS = ("rmin", "rmax", "cmin", "cmax")


def read_plane_numbers(f: FitsFile) -> dict[str, int]:
    """Mask plane number of every ``S_MASK_*`` name listed in HDU 11."""
    table = f.table(PLANE_TABLE_HDU, "mask plane names", ("defName", "attributeName", "Value"))
    planes = {}
    for def_name, attribute, value in zip(np.char.strip(table["defName"].astype(str)),
                                          np.char.strip(table["attributeName"].astype(str)),
                                          table["Value"], strict=True):
        if def_name == "S_MASKTYPE":
            planes[str(attribute)] = int(value)
    return planes


def read_fpm_mask(path: str | Path, shape: tuple[int, int],
                  planes: tuple[str, ...] = MASKED_PLANES) -> np.ndarray:
    """Boolean mask (ny, nx), True where a pixel lies in a box of one of ``planes``.

    Boxes are clipped to ``shape``, so a cut-out starting at frame pixel (0, 0) gets its part of
    the frame's mask.

    Raises
    ------
    InputFileError
        Naming the file, if a plane is not listed or its table is missing or malformed.
    """
    f = FitsFile(path)
    numbers = read_plane_numbers(f)
    ny, nx = shape
    mask = np.zeros(shape, dtype=bool)
    for plane in planes:
        if plane not in numbers:
            raise f.error(f"HDU {PLANE_TABLE_HDU} does not list mask plane {plane}")
        hdu = numbers[plane] + 1
        if not 0 < hdu < PLANE_TABLE_HDU:
            raise f.error(f"mask plane {plane} has number {numbers[plane]}, out of range")
        table = f.table(hdu, f"{plane} object masks", BOX_COLUMNS)
        rmin, rmax, cmin, cmax = (f.column(table, c, hdu, np.int64) for c in BOX_COLUMNS)
        for r0, r1, c0, c1 in zip(np.maximum(rmin, 0), np.minimum(rmax, ny - 1),
                                  np.maximum(cmin, 0), np.minimum(cmax, nx - 1), strict=True):
            if r0 <= r1 and c0 <= c1:
                mask[r0:r1 + 1, c0:c1 + 1] = True
    return mask
