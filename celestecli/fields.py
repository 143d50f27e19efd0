"""SDSS field identifiers and the FIELD tokens users type (RUN/CAMCOL/FIELD or RUN-CAMCOL-FIELD)."""

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from celestecli.errors import UsageError

_TOKEN = re.compile(r"^\s*(\d{1,6})\s*([/-])\s*([1-6])\s*\2\s*(\d{1,4})\s*$")


@dataclass(frozen=True, order=True)
class FieldID:
    """One SDSS imaging field: run, camera column (1-6) and field number."""

    run: int
    camcol: int
    field: int

    @classmethod
    def parse(cls, token: str) -> "FieldID":
        """Parse ``RUN/CAMCOL/FIELD`` or ``RUN-CAMCOL-FIELD``; UsageError quotes a bad token."""
        m = _TOKEN.match(token)
        if not m:
            raise UsageError(
                f"malformed field token {token!r}: expected RUN/CAMCOL/FIELD or "
                "RUN-CAMCOL-FIELD with camcol 1-6, e.g. 4263/5/119"
            )
        return cls(int(m.group(1)), int(m.group(3)), int(m.group(4)))

    def __str__(self) -> str:
        return f"{self.run}/{self.camcol}/{self.field}"

    @property
    def stem(self) -> str:
        """The ``RRRRRR-C-FFFF`` part of SDSS file names."""
        return f"{self.run:06d}-{self.camcol}-{self.field:04d}"


def _lines(stream) -> Iterator[str]:
    for line in stream:
        line = line.split("#", 1)[0].strip()
        if line:
            yield line


def collect_fields(tokens: Iterable[str], fields_file: Path | None, stdin) -> list[FieldID]:
    """Fields from command-line tokens, ``--fields FILE`` and ``-`` (stdin; also ``--fields -``),
    deduplicated in order.

    Blank lines and ``#`` comments in files and stdin are ignored.
    """
    raw: list[str] = []
    for token in tokens:
        if token == "-":
            raw.extend(_lines(stdin))
        else:
            raw.append(token)
    if fields_file is not None and str(fields_file) == "-":
        raw.extend(_lines(stdin))
    elif fields_file is not None:
        try:
            with open(fields_file) as fh:
                raw.extend(_lines(fh))
        except OSError as exc:
            raise UsageError(f"cannot read --fields file {fields_file}: {exc.strerror}") from exc
    out: list[FieldID] = []
    seen = set()
    for token in raw:
        fid = FieldID.parse(token)
        if fid not in seen:
            seen.add(fid)
            out.append(fid)
    return out
