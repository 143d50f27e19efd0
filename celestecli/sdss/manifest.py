"""The fetch manifest: one line per verified file, so later runs can skip it cheaply.

``DATA_DIR/.celeste-manifest.tsv`` is append-only, tab-separated, with the columns
``url, path, bytes, sha256, fetched_at`` (path relative to the data dir, time in UTC ISO 8601).
A file whose size and SHA-256 match its latest entry needs no decompression to be trusted;
anything else is verified in full. Each entry is one ``write`` on an ``O_APPEND`` descriptor,
so concurrent writers (threads or processes) do not interleave lines.
"""

import hashlib
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

MANIFEST_NAME = ".celeste-manifest.tsv"
HEADER = "# url\tpath\tbytes\tsha256\tfetched_at\n"


@dataclass(frozen=True)
class ManifestEntry:
    url: str
    path: str
    nbytes: int
    sha256: str
    fetched_at: str


def sha256_file(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


class Manifest:
    """The manifest of one data dir: read once, appended to as files are verified."""

    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / MANIFEST_NAME
        self._lock = threading.Lock()
        self._entries: dict[str, ManifestEntry] = {}
        if self.path.is_file():
            with open(self.path, encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    entry = _parse(line)
                    if entry is not None:
                        self._entries[entry.path] = entry  # the latest entry wins

    def relpath(self, path: Path) -> str:
        return Path(path).relative_to(self.data_dir).as_posix()

    def entry(self, path: Path) -> ManifestEntry | None:
        """The latest entry for ``path``, if it was ever verified here."""
        return self._entries.get(self.relpath(path))

    def matches(self, path: Path) -> bool:
        """Whether ``path`` has the size and SHA-256 of its latest manifest entry.

        Raises OSError when the file exists but cannot be read: that says nothing about its
        bytes, and must not get a good file deleted as damaged.
        """
        entry = self.entry(path)
        if entry is None:
            return False
        try:
            return path.stat().st_size == entry.nbytes and sha256_file(path) == entry.sha256
        except FileNotFoundError:
            return False

    def record(self, url: str, path: Path, sha256: str) -> None:
        """Append an entry for the verified file ``path``."""
        entry = ManifestEntry(url, self.relpath(path), Path(path).stat().st_size, sha256,
                              datetime.now(UTC).isoformat(timespec="seconds"))
        line = "\t".join([entry.url, entry.path, str(entry.nbytes), entry.sha256,
                          entry.fetched_at]) + "\n"
        with self._lock:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            try:
                # 0o666 as for lock files: the umask decides who else may append (a group)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL,
                             0o666)
                os.write(fd, HEADER.encode())
                os.close(fd)
            except FileExistsError:
                pass
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
            self._entries[entry.path] = entry


def _parse(line: str) -> ManifestEntry | None:
    if line.startswith("#") or not line.endswith("\n"):
        return None  # header, or a line cut short by a crash
    cols = line.rstrip("\n").split("\t")
    if len(cols) != 5 or not cols[2].isdigit() or len(cols[3]) != 64:
        return None
    return ManifestEntry(cols[0], cols[1], int(cols[2]), cols[3], cols[4])
