"""The provenance fingerprint that decides whether a field's existing catalog is up to date.

It is the SHA-256 of a canonical JSON document holding the name and SHA-256 of every input
file, every inference setting that changes the results (all of ``InferSettings`` but the thread
count), the celeste version and a digest of its code (``revision.code_digest``: a rebuilt
kernel or an edited module redoes the fields).  It is stored in the catalog (FITS keyword
``FPRINT``, ECSV ``provenance.extra.FPRINT``); a rerun recomputes it and skips the field when
they agree.
"""

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

from celestecli import __version__
from celestecli.catalog.io import read_table
from celestecli.catalog.provenance import InputFile
from celestecli.errors import CelesteError
from celestecli.revision import code_digest

log = logging.getLogger(__name__)

KEYWORD = "FPRINT"
# Settings that decide how a result is computed but not what it is.
NOT_RESULT_SETTINGS = frozenset({"threads"})


def result_settings(settings) -> dict:
    """The settings of an ``InferSettings`` that change results, as plain JSON values."""
    values = dataclasses.asdict(settings)
    return {k: v for k, v in values.items() if k not in NOT_RESULT_SETTINGS}


def fingerprint(inputs: list[InputFile], settings, version: str = __version__,
                code: str | None = None) -> str:
    """Hex SHA-256 over the inputs' names and hashes, the result settings, the version and the
    code's digest (``code``, by default this installation's ``code_digest()``).

    Input paths enter by file name only, so moving the data directory does not make every
    catalog out of date.
    """
    doc = {
        "version": version,
        "code": code_digest() if code is None else code,
        "settings": result_settings(settings),
        "inputs": sorted([Path(f.path).name, f.sha256] for f in inputs),
    }
    text = json.dumps(doc, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def stored_fingerprint(path) -> str | None:
    """The fingerprint recorded in an existing catalog; None when absent or unreadable.

    The whole file is read and FITS checksums verified, so a corrupt catalog reads as None and
    its field is redone.  CSV has no room for provenance: always None.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        raw = read_table(path)
    except (CelesteError, OSError) as exc:
        log.warning("%s is unreadable, redoing it: %s", path, exc)
        return None
    if raw.fmt == "fits":
        value = raw.header.get(KEYWORD)
    elif raw.fmt == "ecsv":
        extra = (raw.table.meta.get("provenance") or {}).get("extra") or {}
        value = extra.get(KEYWORD)
    else:
        value = None
    return str(value) if value else None
