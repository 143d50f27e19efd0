"""What a field's catalog records about its input files: SHA-256, and where they came from.

``celeste fetch`` notes every file it verified, with its URL and SHA-256, in the data dir's
manifest. A catalog's INPUTS table carries that URL for each input whose bytes are still the
ones fetched, and the SDSS data release (``dr<N>`` in the SAS URLs) becomes its ``SDSSDR``.
Files that fetch did not download (copied in, simulated) have no URL and give no release.
"""

import logging
import re
from dataclasses import replace
from pathlib import Path

from celestecli.catalog.provenance import InputFile
from celestecli.sdss.manifest import Manifest

log = logging.getLogger(__name__)

_RELEASE_IN_URL = re.compile(r"/dr(\d+)/")


def input_files(data_dir: Path, paths) -> list[InputFile]:
    """Each input file hashed, with the URL the data dir's fetch manifest recorded for it when
    the manifest's SHA-256 is the file's own."""
    try:
        manifest = Manifest(data_dir)
    except OSError as exc:  # an unreadable manifest costs the URLs, not the field
        log.warning("cannot read the fetch manifest of %s, so the catalog records no input "
                    "URLs: %s", data_dir, exc)
        manifest = None
    out = []
    for path in paths:
        described = InputFile.of(path)
        try:
            entry = manifest.entry(Path(path)) if manifest is not None else None
        except ValueError:  # not below the data dir
            entry = None
        if entry is not None and entry.sha256 == described.sha256:
            described = replace(described, url=entry.url)
        out.append(described)
    return out


def release_of(inputs: list[InputFile]) -> int | None:
    """The SDSS data release the inputs were fetched from, when their URLs name one and the
    same release; else None."""
    releases = {int(m.group(1)) for f in inputs if (m := _RELEASE_IN_URL.search(f.url))}
    return releases.pop() if len(releases) == 1 else None
