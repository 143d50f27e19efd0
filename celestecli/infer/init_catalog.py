"""Where the initial catalog comes from: ``celeste infer --init auto|photo|detect``.

* ``photo``: the field's photoObj entries (after Celeste's selection, MODEL.md 7.4,
  BRIGHT rows dropped as it meant to);
* ``detect``: source detection on the images (MODEL.md 7.6, ``detect.detect_sources``);
* ``auto`` (default): photo when the photoObj has sources, else detect (SDSS Photo gives up on
  crowded fields such as M2, 2583/2/136, whose photoObj is empty).
"""

from celestecli.errors import InputFileError, UsageError
from celestecli.infer.detect import check_region, detect_sources, in_region, reference_image
from celestecli.infer.settings import INIT_MODES
from celestecli.sdss.photoobj import CatalogEntries


def _has_sources(photoobj_entries: CatalogEntries | None) -> bool:
    return photoobj_entries is not None and len(photoobj_entries) > 0


def check_photo_init(photoobj_entries: CatalogEntries | None, mode: str, photoobj_path=None):
    """Raise if ``mode`` is unknown (UsageError) or is ``photo`` without photoObj sources
    (InputFileError naming ``photoobj_path``); needs no image, so a run can check it first."""
    if mode not in INIT_MODES:
        raise UsageError(f"unknown --init {mode!r}: choose from {', '.join(INIT_MODES)}")
    if mode == "photo" and not _has_sources(photoobj_entries):
        raise InputFileError(photoobj_path if photoobj_path is not None else "photoObj",
                             "has no sources; use --init detect")


def choose_init(photoobj_entries: CatalogEntries | None, images, mode: str = "auto", *,
                photoobj_path=None, region=None) -> tuple[CatalogEntries, str]:
    """The initial catalog for ``mode`` and which source gave it ("photo" or "detect").

    Parameters
    ----------
    photoobj_entries : the photoObj's entries (``read_photoobj``), or None without a photoObj
    images : the field's images (``load_field``), for detection and for the region's frame
    mode : "auto", "photo" or "detect"
    photoobj_path : the photoObj file, named in the error when ``photo`` finds no sources
    region : (x0, x1, y0, y1), optional inclusive pixel box of the r frame; only entries whose
        position falls in it are returned (``auto`` still decides on the whole photoObj)

    Raises
    ------
    UsageError
        An unknown mode.
    InputFileError
        ``photo`` with a photoObj that has no sources.
    """
    check_photo_init(photoobj_entries, mode, photoobj_path)
    if mode == "detect" or not _has_sources(photoobj_entries):
        return detect_sources(images, region), "detect"
    entries = photoobj_entries
    if region is not None:
        reference = reference_image(images)
        region = check_region(region, reference)
        entries = entries.subset(in_region(reference, entries.ra, entries.dec, region))
    return entries, "photo"

