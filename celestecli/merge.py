"""Merge per-field catalogs into one catalog in which every source appears once.

SDSS fields overlap (consecutive fields of a run share about 128 rows; neighbouring camcols
share a few columns), so a source near a field's edge is fitted once per field it lies in.
The rule:

* Two rows from *different* fields (``run, camcol, field`` columns) whose positions differ by
  less than the tolerance (default 0.396 arcsec, one SDSS pixel) are the same source. Rows of
  the same field (of one input) are never merged: inference may well fit two close sources
  in one field.
* Of a group of such duplicates, the row kept is the one lying farthest from the edge of its
  own field's image, measured from its ``x, y`` position in that field's r frame: the fit
  there saw the most of the source's surroundings. Ties fall to the smaller
  ``(run, camcol, field, objid, ra, dec)``.
* Greedily, in that order of preference: a row is kept unless a row of another field within
  the tolerance was kept before it. This is well defined for chains of near neighbours too.
* A field given as several ``celeste infer --region`` catalogs (provenance ``REGION``; their
  boxes must not overlap) counts as one field per region: rows of different regions within the
  tolerance are duplicates too (a source on the border between two regions may be detected in
  both runs), and the edge that counts is the nearer of the frame's and the region's.

The output is sorted by ``(run, camcol, field, objid, ra, dec)``, so it does not depend on the
order of the inputs; merging the same inputs twice gives the same table. A field may appear in
only one input file, unless each of its inputs is a region run as above. Image sizes come from
the inputs' ``IMAGEW``/``IMAGEH`` provenance keywords when present, else the SDSS frame size
(2048 x 1489).
"""

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.table import Table, vstack
from scipy.spatial import cKDTree

from celestecli.catalog import InputFile, Provenance, read_catalog, validate_columns
from celestecli.errors import UsageError
from celestecli.fields import FieldID
from celestecli.infer.settings import Region
from celestecli.validate.matching import DEFAULT_TOLERANCE_ARCSEC, chord_for_angle, unit_vectors

log = logging.getLogger(__name__)

MERGE_REQUIRED = ("ra", "dec", "run", "camcol", "field", "x", "y")
SDSS_FRAME_WIDTH = 2048  # columns (x)
SDSS_FRAME_HEIGHT = 1489  # rows (y)
_SORT_KEYS = ("run", "camcol", "field", "objid", "ra", "dec")


def edge_distance(x, y, width, height) -> np.ndarray:
    """Distance in pixels from (x, y) to the nearest image edge (pixel centres at integers).

    Non-finite positions get -inf, the lowest preference.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    width = np.asarray(width, dtype=np.float64)
    height = np.asarray(height, dtype=np.float64)
    d = np.minimum.reduce([x + 0.5, width - 0.5 - x, y + 0.5, height - 0.5 - y])
    return np.where(np.isfinite(d), d, -np.inf)


def _sort_order(table: Table, keys) -> np.ndarray:
    """Row order by ``keys`` (first key most significant), stable."""
    present = [np.asarray(table[k]) for k in keys if k in table.colnames]
    return np.lexsort(present[::-1]) if present else np.arange(len(table))


def duplicate_rows(table: Table, edge: np.ndarray, piece: np.ndarray,
                   tolerance_arcsec: float = DEFAULT_TOLERANCE_ARCSEC) -> np.ndarray:
    """Boolean mask of rows to drop as duplicates of better-placed rows of other pieces (a
    piece: a field, or one --region run of a field, numbered in ``piece``)."""
    n = len(table)
    drop = np.zeros(n, dtype=bool)
    ok = np.flatnonzero(np.isfinite(table["ra"]) & np.isfinite(table["dec"]))
    if ok.size < 2:
        return drop
    tree = cKDTree(unit_vectors(np.asarray(table["ra"])[ok], np.asarray(table["dec"])[ok]))
    pairs = tree.query_pairs(chord_for_angle(tolerance_arcsec), output_type="ndarray")
    if pairs.size == 0:
        return drop
    i, j = ok[pairs[:, 0]], ok[pairs[:, 1]]
    cross = piece[i] != piece[j]
    i, j = i[cross], j[cross]
    if i.size == 0:
        return drop
    neighbours: dict[int, list[int]] = {}
    for a, b in zip(i.tolist(), j.tolist(), strict=True):
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    # preference: largest edge distance first, then the sort keys
    keys = [np.asarray(table[k]) for k in _SORT_KEYS if k in table.colnames]
    order = np.lexsort([*keys[::-1], -edge])
    kept = np.zeros(n, dtype=bool)
    for row in order.tolist():
        others = neighbours.get(row)
        if others is not None and any(kept[o] for o in others):
            drop[row] = True
        else:
            kept[row] = True
    return drop


@dataclass
class MergeResult:
    """The merged table and what the provenance of the output records."""

    table: Table
    n_in: int
    n_duplicates: int
    provenance: Provenance


def _field_columns(table: Table) -> np.ndarray:
    """(run, camcol, field) of every row, as an (n, 3) integer array."""
    return np.column_stack([np.asarray(table[c], dtype=np.int64)
                            for c in ("run", "camcol", "field")])


def _field_ids(table: Table) -> set[tuple[int, int, int]]:
    if len(table) == 0:
        return set()
    return {tuple(int(v) for v in row) for row in np.unique(_field_columns(table), axis=0)}


def _image_shape(prov: Provenance | None) -> tuple[int | None, int | None]:
    if prov is None:
        return None, None
    return prov.extra.get("IMAGEW"), prov.extra.get("IMAGEH")


def _region(path: Path, prov: Provenance | None) -> Region | None:
    """The --region an input was inferred over (None: the whole field, or not recorded)."""
    text = prov.extra.get("REGION") if prov is not None else None
    if not text:
        return None
    try:
        return Region.parse(str(text))
    except UsageError as exc:
        raise UsageError(f"{path}: unreadable REGION {text!r} in its provenance") from exc


def _overlap(a: Region, b: Region) -> bool:
    return a.x0 <= b.x1 and b.x0 <= a.x1 and a.y0 <= b.y1 and b.y0 <= a.y1


def _extent(region: Region | None, prov: Provenance | None) -> str:
    """How much of its field an input covers, for messages."""
    if region is not None:
        return str(region)
    if prov is None:  # CSV: no provenance, so no REGION either
        return "whole field: no provenance, so no REGION (CSV keeps none; use FITS or ECSV)"
    return "whole field: no REGION"


def _check_field_owners(paths, tables, regions, provs) -> list[tuple[int, int, int]]:
    """The fields the inputs' rows belong to; raises when one comes from two inputs that are
    not --region runs over disjoint boxes."""
    owners: dict[tuple[int, int, int], list[tuple[Path, Region | None, str]]] = {}
    for path, table, region, prov in zip(paths, tables, regions, provs, strict=True):
        extent = _extent(region, prov)
        for fid in sorted(_field_ids(table)):
            for other_path, other, other_extent in owners.get(fid, []):
                if region is None or other is None or _overlap(region, other):
                    raise UsageError(
                        f"field {'/'.join(map(str, fid))} is in both {other_path} "
                        f"({other_extent}) and {path} ({extent}): a field may come from one "
                        "input only, or from --region runs whose boxes do not overlap")
            owners.setdefault(fid, []).append((path, region, extent))
    return list(owners)


def _recorded_fields(provs) -> set[tuple[int, int, int]]:
    """The fields the inputs' provenance names, rows or not (a --region run of a source-free
    box, or a blank field, writes an empty catalog of its field)."""
    out = set()
    for prov in provs:
        for text in prov.fields if prov is not None else []:
            try:
                fid = FieldID.parse(text)
            except UsageError:
                continue  # not ours to check: the output lists the fields it can read
            out.add((fid.run, fid.camcol, fid.field))
    return out


def _pieces(tables) -> np.ndarray:
    """Per row of the stacked tables, the number of its piece: its field within its input."""
    keys = np.concatenate([np.column_stack([_field_columns(t), np.full(len(t), k)])
                           for k, t in enumerate(tables)])
    return np.unique(keys, axis=0, return_inverse=True)[1].ravel()


def _common(values):
    """The value every input records, or None when one lacks it or two differ."""
    distinct = set(values)
    return distinct.pop() if len(distinct) == 1 else None


def _dedupe_paths(paths) -> list[Path]:
    unique: dict[Path, Path] = {}
    for p in map(Path, paths):
        key = p.resolve()
        if key in unique:
            log.warning("%s given more than once: merged once", p)
            continue
        unique[key] = p
    return [unique[k] for k in sorted(unique)]


def merge_catalogs(paths, tolerance_arcsec: float = DEFAULT_TOLERANCE_ARCSEC,
                   command_line: str | None = None) -> MergeResult:
    """Read per-field catalogs, check them, and merge them (rule in the module docstring).

    Every input is read and checked before anything is merged, so a bad input stops the merge
    with an error naming it.
    """
    paths = _dedupe_paths(paths)
    if not paths:
        raise UsageError("no catalogs to merge")
    tables, provs = [], []
    for path in paths:
        table = read_catalog(path)
        validate_columns(table, MERGE_REQUIRED, path)
        provs.append(table.meta.get("provenance"))
        table.meta = {}
        tables.append(table)

    reference = set(tables[0].colnames)
    for path, table in zip(paths[1:], tables[1:], strict=True):
        cols = set(table.colnames)
        if cols != reference:
            missing = sorted(reference - cols)
            extra = sorted(cols - reference)
            detail = "; ".join(filter(None, [
                f"lacks {', '.join(missing)}" if missing else "",
                f"has extra {', '.join(extra)}" if extra else ""]))
            raise UsageError(f"{path} has other columns than {paths[0]}: {detail} (catalogs of "
                             "another celeste version? `celeste infer` remakes the older ones)")

    regions = [_region(path, prov) for path, prov in zip(paths, provs, strict=True)]
    fields = set(_check_field_owners(paths, tables, regions, provs))
    fields |= _recorded_fields(provs)

    edges = []
    for path, table, prov, region in zip(paths, tables, provs, regions, strict=True):
        w, h = _image_shape(prov)
        if (w is None or h is None) and len(paths) > 1:
            log.warning("%s does not record its frame size (IMAGEW, IMAGEH): its distances "
                        "to the field's edge assume SDSS's %d x %d", path, SDSS_FRAME_WIDTH,
                        SDSS_FRAME_HEIGHT)
        edge = edge_distance(table["x"], table["y"], w or SDSS_FRAME_WIDTH,
                             h or SDSS_FRAME_HEIGHT)
        if region is not None:
            # the region as an image of its own, its pixel (0, 0) at the box's corner
            inside = edge_distance(np.asarray(table["x"]) - region.x0,
                                   np.asarray(table["y"]) - region.y0,
                                   region.x1 - region.x0 + 1, region.y1 - region.y0 + 1)
            edge = np.minimum(edge, inside)
        edges.append(edge)
    columns = tables[0].colnames
    merged = vstack([t[columns] for t in tables], join_type="exact",
                    metadata_conflicts="silent")
    drop = duplicate_rows(merged, np.concatenate(edges), _pieces(tables), tolerance_arcsec)
    out = merged[~drop]
    out = out[_sort_order(out, _SORT_KEYS)]
    out.meta = {}

    inputs: list[InputFile] = []
    history: list[str] = []
    for path, table, prov in zip(paths, tables, provs, strict=True):
        if prov is None:
            inputs.append(InputFile.of(path, note=f"{len(table)} rows; no provenance"))
            continue
        direct = InputFile.of(path, note=f"{len(table)} rows; celeste {prov.version or '?'} "
                                         f"{prov.date or '?'}: {prov.command_line or '?'}")
        inputs.append(direct)
        for f in prov.inputs:  # what the input was made from, marked with the input's path
            via = f"{direct.path} > {f.via}" if f.via else direct.path
            inputs.append(InputFile(f.path, f.sha256, f.url, via, f.note))
    history.append(f"celeste merge: {len(paths)} catalogs, {len(merged)} rows in, "
                   f"{int(drop.sum())} duplicates within {tolerance_arcsec:g} arcsec removed "
                   "(kept the copy farthest from its field's or region's edge)")
    extra = {"NINROWS": len(merged), "NDUPS": int(drop.sum()), "DUPTOL": tolerance_arcsec}
    shapes = {_image_shape(p) for p in provs}
    if len(shapes) == 1 and None not in next(iter(shapes)):
        extra["IMAGEW"], extra["IMAGEH"] = next(iter(shapes))
    prov = Provenance(command_line=command_line,
                      fields=["/".join(map(str, fid)) for fid in sorted(fields)],
                      inputs=inputs, history=history, extra=extra,
                      release=_common(p.release if p else None for p in provs),
                      rerun=_common(p.rerun if p else None for p in provs))
    return MergeResult(out, len(merged), int(drop.sum()), prov)
