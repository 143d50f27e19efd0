"""The initial catalog of a field: SDSS photoObj or detection on the images (``--init``)."""

import logging
from pathlib import Path

from celestecli.errors import InputFileError, UsageError
from celestecli.fields import FieldID
from celestecli.sdss.layout import base_name, find_local, local_dir
from celestecli.sdss.photoobj import CatalogEntries, read_photoobj

log = logging.getLogger(__name__)

INIT_MODES = ("auto", "photo", "detect")


def initial_catalog(data_dir: Path, fid: FieldID, images: list, mode: str,
                    region=None) -> CatalogEntries:
    """photo: the photoObj's sources; detect: detection; auto: photo when it has sources."""
    if mode not in INIT_MODES:
        raise UsageError(f"unknown --init {mode!r}: choose from {', '.join(INIT_MODES)}")
    path = find_local(data_dir, fid, "photoObj")
    photo = read_photoobj(path) if path is not None else CatalogEntries.empty()
    if mode == "photo" or (mode == "auto" and len(photo)):
        if not len(photo):
            where = path or local_dir(data_dir, fid, "photoObj") / base_name(fid, "photoObj")
            raise InputFileError(where, "has no sources after Celeste's selection "
                                        "(or is missing): use --init detect")
        log.info("%s: %d initial sources from %s", fid, len(photo), path.name)
        return photo
    from celestecli.infer.detect import detect_sources

    entries = detect_sources(images, region=region)
    log.info("%s: %d initial sources from detection", fid, len(entries))
    return entries
