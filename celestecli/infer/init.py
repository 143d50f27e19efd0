"""The initial catalog of a field for ``celeste infer --init`` (``init_catalog.choose_init``)."""

import logging
from pathlib import Path

from celestecli.fields import FieldID
from celestecli.infer.init_catalog import choose_init
from celestecli.sdss.layout import base_name, find_local, local_dir
from celestecli.sdss.photoobj import read_photoobj

log = logging.getLogger(__name__)


def initial_catalog(data_dir: Path, fid: FieldID, images: list, mode: str,
                    box: tuple[int, int, int, int] | None = None):
    """Initial sources of the field (restricted to the r-frame pixel ``box`` if given)."""
    path = find_local(data_dir, fid, "photoObj")
    photo = read_photoobj(path) if path is not None else None
    named = path or local_dir(data_dir, fid, "photoObj") / base_name(fid, "photoObj")
    entries, origin = choose_init(photo, images, mode, photoobj_path=named, region=box)
    log.info("%s: %d initial sources from %s", fid, len(entries),
             named.name if origin == "photo" else "detection")
    return entries
