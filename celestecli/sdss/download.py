"""HTTP downloads that never leave a partial or corrupt file under its final name.

Each file is written to ``<final>.part``; an existing ``.part`` is resumed with an HTTP
``Range`` request (a ``200`` reply means the server ignored the range, so the file restarts).
A complete body is verified (Content-Length, full decompression, FITS structure) and only
then renamed atomically to its final name. Connection errors, 429/500/502/503/504 and
verification failures are retried with exponential backoff, honouring ``Retry-After``;
other HTTP errors (404: the file is not in that release) fail the file at once.
Etiquette and rationale: ENGINEERING.md 5.3.
"""

import errno
import http.client
import logging
import os
import random
import re
import ssl
import sys
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

from tqdm import tqdm

from celestecli import __version__
from celestecli.errors import DownloadError, InputFileError
from celestecli.locks import FileLock
from celestecli.sdss.manifest import Manifest
from celestecli.sdss.verify import verify_file

log = logging.getLogger(__name__)

# flock errors of file systems without locking (Lustre mounted without -o flock, some NFS)
NO_LOCKING_ERRNOS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS}

USER_AGENT = f"celestecli/{__version__}"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
CHUNK_BYTES = 1 << 16
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$")


@dataclass(frozen=True)
class RetryPolicy:
    """How many times, and how patiently, to try one file.

    Attributes
    ----------
    tries
        Attempts per file, the first included.
    backoff
        Seconds before the first retry; doubled for each further retry (plus up to 25 %
        jitter so parallel workers do not retry in lockstep).
    max_wait
        Cap on any one wait, a server's ``Retry-After`` included.
    """

    tries: int = 5
    backoff: float = 1.0
    max_wait: float = 120.0

    def wait(self, failures: int, retry_after: float | None = None) -> float:
        """Seconds to wait after the ``failures``-th failed attempt."""
        wait = self.backoff * 2 ** (failures - 1) * (1 + 0.25 * random.random())
        if retry_after is not None:
            wait = max(wait, retry_after)
        return min(wait, self.max_wait)


@dataclass(frozen=True)
class Transfer:
    """One file to fetch.

    Attributes
    ----------
    url
        Where the file is served.
    dest
        Its final local path.
    label
        What the file belongs to, for messages (e.g. ``field 2583/2/136``).
    equivalents
        Other local paths holding the same content (e.g. the file stored uncompressed);
        a valid one makes the download unnecessary.
    """

    url: str
    dest: Path
    label: str
    equivalents: tuple[Path, ...] = ()

    @property
    def part(self) -> Path:
        return self.dest.with_name(self.dest.name + ".part")


@dataclass(frozen=True)
class Outcome:
    """What happened to one transfer: ``downloaded``, ``skipped`` or ``failed``."""

    transfer: Transfer
    status: str
    nbytes: int = 0  # size of the file downloaded
    error: DownloadError | None = None


class ByteProgress:
    """A thread-safe tqdm bar in bytes on stderr, hidden when stderr is not a TTY.

    Its total is the sum of the Content-Lengths of the responses received so far, so it
    grows as downloads start; the files finished are shown beside it.
    """

    def __init__(self, n_files: int, desc: str = "fetch"):
        self._lock = threading.Lock()
        self._n_files = n_files
        self._files_done = 0
        self._bar = tqdm(total=0, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                         disable=None, file=sys.stderr, postfix=f"0/{n_files} files")

    def expect(self, nbytes: int) -> None:
        with self._lock:
            self._bar.total += nbytes
            self._bar.refresh()

    def advance(self, nbytes: int) -> None:
        with self._lock:
            self._bar.update(nbytes)

    def file_done(self) -> None:
        with self._lock:
            self._files_done += 1
            self._bar.set_postfix_str(f"{self._files_done}/{self._n_files} files")

    def close(self) -> None:
        self._bar.close()


class _Retryable(Exception):
    """A failed attempt worth repeating; ``retry_after`` is the server's wish in seconds."""

    def __init__(self, reason: str, retry_after: float | None = None,
                 unreachable: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.unreachable = unreachable  # no connection at all (refused, no route, no DNS)


class _Interrupted(Exception):
    """The downloader was stopped (Ctrl-C) while this transfer ran."""


class Downloader:
    """Fetches transfers one at a time per calling thread; safe to share between threads.

    Parameters
    ----------
    manifest
        The data dir's manifest: consulted to skip verified files, appended to on success.
    policy
        Retry policy (default: ``RetryPolicy()``).
    progress
        Byte progress bar, or None.
    timeout
        Socket timeout in seconds for connecting and for each read.
    """

    def __init__(self, manifest: Manifest, policy: RetryPolicy | None = None,
                 progress: ByteProgress | None = None, timeout: float = 60.0):
        self.manifest = manifest
        self.policy = policy or RetryPolicy()
        self.progress = progress
        self.timeout = timeout
        self._opener = urllib.request.build_opener()  # honours *_proxy and follows redirects
        self._stop = threading.Event()
        self._warned_no_locking = threading.Event()
        # Once one file has used up its tries without ever reaching the server, and no file
        # has reached it, the others give up at once: an offline node or a wrong host name
        # would otherwise retry every file of every field.
        self._reached_server = threading.Event()
        self._unreachable = threading.Event()
        self._unreachable_reason = ""
        self._warned_no_manifest = threading.Event()
        self._warned_other_source = threading.Event()

    def stop(self) -> None:
        """Make running and pending transfers give up soon (their ``.part`` files stay)."""
        self._stop.set()

    def fetch(self, t: Transfer) -> Outcome:
        """Make ``t.dest`` a verified copy of ``t.url``, unless a valid copy is present."""
        outcome = self._fetch(t)
        if self.progress is not None:
            self.progress.file_done()
        return outcome

    def _lock(self, t: Transfer) -> FileLock | None:
        """Hold ``t``'s lock, waiting while another celeste fetch holds it; None where the file
        system cannot lock, after a warning.  The lock file sits in the data directory's root
        (SDSS file names are unique), so no field directory is made before data arrive."""
        self.manifest.data_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.manifest.data_dir / t.dest.name)
        try:
            if lock.acquire():
                return lock
        except OSError as exc:
            if exc.errno not in NO_LOCKING_ERRNOS:
                raise
            if not self._warned_no_locking.is_set():
                self._warned_no_locking.set()
                log.warning("%s: the file system cannot lock files (%s); overlapping fetches "
                            "into it are not coordinated", self.manifest.data_dir, exc.strerror)
            return None
        log.info("%s: being fetched by another process (%s); waiting for it", t.dest.name,
                 lock.holder())
        if not lock.acquire_when_free(self._stop):
            raise _Interrupted
        return lock

    def _fetch(self, t: Transfer) -> Outcome:
        lock = None
        try:
            if self._verified_before(t):  # no lock needed: a read-only mirror works
                return Outcome(t, "skipped")
            lock = self._lock(t)
            if self._present(t):
                log.debug("%s: present, skipped", t.dest)
                t.part.unlink(missing_ok=True)  # a leftover of an older run, now useless
                return Outcome(t, "skipped")
            return self._download(t)
        except DownloadError as exc:
            return Outcome(t, "failed", error=exc)
        except _Interrupted:
            return Outcome(t, "failed", error=DownloadError(t.url, "interrupted"))
        except OSError as exc:  # the local disk, not the network: retrying will not help
            return Outcome(t, "failed", error=DownloadError(t.url, f"local file error: {exc}"))
        finally:
            if lock is not None:
                lock.release()

    def _verified_before(self, t: Transfer) -> bool:
        """Whether a copy of ``t`` is unchanged since this data dir's manifest recorded it."""
        for path in (t.dest, *t.equivalents):
            entry = self.manifest.entry(path)
            if entry is not None and path.is_file() and self.manifest.matches(path):
                if entry.url != t.url:
                    self._warn_other_source(path, entry.url, t.url)
                return True
        return False

    def _present(self, t: Transfer) -> bool:
        """Whether a valid copy of ``t`` is in place (recorded in the manifest if it was not
        yet).  A damaged copy is deleted, so that the download replaces it and no reader
        finds it first."""
        if self._verified_before(t):  # e.g. another thread fetched it while we waited
            return True
        for path in (t.dest, *t.equivalents):
            if not path.is_file():
                continue
            entry = self.manifest.entry(path)
            if entry is not None:  # SDSS files never change: this one was damaged here
                log.warning("%s: its size or SHA-256 changed since it was fetched (%s); "
                            "deleting it and fetching it again", path, entry.fetched_at)
                path.unlink()
                continue
            try:
                digest = verify_file(path)
            except InputFileError as exc:
                log.warning("%s; deleting it and fetching %s", exc, t.dest.name)
                path.unlink()
                continue
            self._record(t.url, path, digest)
            return True
        return False

    def _record(self, url: str, path: Path, digest: str) -> None:
        """Note a verified file in the manifest; a manifest that cannot be written costs
        only speed (later runs verify the file in full), so it is a warning, not a failure."""
        try:
            self.manifest.record(url, path, digest)
        except OSError as exc:
            if not self._warned_no_manifest.is_set():
                self._warned_no_manifest.set()
                log.warning("cannot record verified files in %s (%s): later runs will verify "
                            "them in full", self.manifest.path, exc.strerror or exc)

    def _warn_other_source(self, path: Path, fetched_from: str, wanted: str) -> None:
        if not self._warned_other_source.is_set():
            self._warned_other_source.set()
            log.warning("%s was fetched from %s, not %s; kept (and so are other such files): "
                        "the data directory holds one copy of each file name, so give each "
                        "data release its own --data-dir", path, fetched_from, wanted)

    def _download(self, t: Transfer) -> Outcome:
        tries = self.policy.tries
        never_connected = True
        for attempt in range(1, tries + 1):
            if self._stop.is_set():
                raise _Interrupted
            if self._unreachable.is_set() and not self._reached_server.is_set():
                raise DownloadError(t.url, f"{'not tried' if attempt == 1 else 'gave up'}: "
                                           "the server could not be reached ("
                                           f"{self._unreachable_reason})")
            try:
                self._transfer(t.url, t.part)
                digest = verify_file(t.part, t.dest.name)
            except _Retryable as exc:
                problem, retry_after = exc.reason, exc.retry_after
                never_connected &= exc.unreachable
            except InputFileError as exc:
                t.part.unlink(missing_ok=True)  # bad bytes: resuming would keep them
                problem, retry_after = f"downloaded file is corrupt: {exc.problem}", None
                never_connected = False
            else:
                os.replace(t.part, t.dest)
                self._record(t.url, t.dest, digest)
                log.debug("%s: downloaded to %s", t.url, t.dest)
                return Outcome(t, "downloaded", t.dest.stat().st_size)
            if attempt == tries:
                if never_connected and not self._reached_server.is_set():
                    self._unreachable_reason = problem
                    self._unreachable.set()
                break
            wait = self.policy.wait(attempt, retry_after)
            log.warning("%s: %s; try %d of %d in %.3g s", t.url, problem, attempt + 1, tries, wait)
            if self._stop.wait(wait):
                raise _Interrupted
        raise DownloadError(t.url, f"{problem} (gave up after {tries} tries)")

    def _transfer(self, url: str, part: Path) -> None:
        """One HTTP exchange: append to (or restart) ``part`` until the body is complete."""
        offset = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(
            url, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
        if offset:
            request.add_header("Range", f"bytes={offset}-")
        try:
            response = self._opener.open(request, timeout=self.timeout)
            self._reached_server.set()
        except urllib.error.HTTPError as exc:
            self._reached_server.set()
            exc.close()
            if exc.code == 416 and offset:
                # nothing after byte OFFSET: the .part may already be whole (a run killed
                # before its rename, a wrong Content-Length); verifying it decides
                return
            if exc.code in RETRY_STATUSES:
                raise _Retryable(f"HTTP {exc.code} {exc.reason}",
                                 retry_after_seconds(exc.headers.get("Retry-After"))) from None
            raise DownloadError(url, f"HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, ssl.SSLCertVerificationError):
                raise DownloadError(url, f"TLS certificate rejected: {exc.reason}") from None
            raise _Retryable(f"cannot connect: {_describe(exc.reason)}",
                             unreachable=True) from None
        except (OSError, http.client.HTTPException) as exc:
            raise _Retryable(f"connection error: {_describe(exc)}") from None
        with response:
            self._receive(response, url, part, offset)

    def _receive(self, response, url: str, part: Path, offset: int) -> None:
        if response.status == 206:
            start = content_range_start(response.headers.get("Content-Range"))
            if start != offset:
                part.unlink(missing_ok=True)
                raise _Retryable(f"server resumed at byte {start}, not {offset}")
            mode = "ab"
        else:
            if offset:
                log.info("%s: server ignored the byte range; downloading from the start", url)
            mode = "wb"
        length = response.headers.get("Content-Length", "")
        expected = int(length) if length.strip().isdigit() else None
        if expected is not None and self.progress is not None:
            self.progress.expect(expected)
        received = 0
        part.parent.mkdir(parents=True, exist_ok=True)
        with open(part, mode) as fh:
            while True:
                if self._stop.is_set():
                    raise _Interrupted
                try:
                    chunk = response.read1(CHUNK_BYTES)  # what has arrived: a stall loses nothing
                except (OSError, http.client.HTTPException) as exc:
                    raise _Retryable(f"connection error after {received} bytes: "
                                     f"{_describe(exc)}") from None
                if not chunk:
                    break
                fh.write(chunk)
                received += len(chunk)
                if self.progress is not None:
                    self.progress.advance(len(chunk))
            fh.flush()
            os.fsync(fh.fileno())
        if expected is not None and received != expected:
            raise _Retryable(f"connection closed after {received} of {expected} bytes")


def download_all(transfers: list[Transfer], downloader: Downloader, jobs: int) -> list[Outcome]:
    """Fetch ``transfers`` with ``jobs`` worker threads; outcomes in the order given."""
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="fetch") as pool:
        futures = [pool.submit(downloader.fetch, t) for t in transfers]
        try:
            return [f.result() for f in futures]
        except BaseException:  # Ctrl-C: stop the workers, keep their .part files
            downloader.stop()
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (delta-seconds or HTTP-date), or None."""
    if not value or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def content_range_start(value: str | None) -> int | None:
    """First byte of a ``Content-Range: bytes START-END/TOTAL`` header, or None."""
    m = _CONTENT_RANGE.match(value or "")
    return int(m.group(1)) if m else None


def _describe(exc) -> str:
    return str(exc) or type(exc).__name__
