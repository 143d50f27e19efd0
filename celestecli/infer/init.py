"""The initial catalog of a field for ``celeste infer --init`` (``init_catalog.choose_init``)."""

import logging
from dataclasses import replace
from pathlib import Path

from celestecli.fields import FieldID
from celestecli.infer.init_catalog import check_photo_init, choose_init
from celestecli.sdss.layout import base_name, find_local, local_dir
from celestecli.sdss.photoobj import CatalogEntries, read_photoobj

log = logging.getLogger(__name__)


def read_field_photoobj(data_dir: Path, fid: FieldID,
                        mode: str) -> tuple[CatalogEntries | None, Path]:
    """The field's photoObj entries (None without the file) and its path, checked against
    ``mode`` before any image is read: ``--init photo`` without photoObj sources fails at once
    rather than after the frames have loaded."""
    path = find_local(data_dir, fid, "photoObj")
    photo = read_photoobj(path) if path is not None else None
    named = path or local_dir(data_dir, fid, "photoObj") / base_name(fid, "photoObj")
    check_photo_init(photo, mode, named)
    return photo, named


def initial_catalog(photo: CatalogEntries | None, photoobj_path: Path, fid: FieldID,
                    images: list, mode: str, box: tuple[int, int, int, int] | None = None,
                    detection_objid_base: int = 0):
    """Initial sources of the field (restricted to the r-frame pixel ``box`` if given), from
    ``read_field_photoobj``'s result or from detection on ``images``; detections are numbered
    from ``detection_objid_base`` (``Region.detection_objid_base``)."""
    entries, origin = choose_init(photo, images, mode, photoobj_path=photoobj_path, region=box)
    log.info("%s: %d initial sources from %s", fid, len(entries),
             photoobj_path.name if origin == "photo" else "detection")
    if origin == "detect" and detection_objid_base:
        entries = replace(entries, objid=entries.objid + detection_objid_base)
    return entries
