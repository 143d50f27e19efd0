"""A local stand-in for the SDSS Science Archive Server, for testing ``celeste fetch``.

``SASServer(root)`` serves the files of a data dir in the local layout (``root`` is usually
``../shared/data/sdss``) at their SAS URLs ``/sas/drN/{boss|eboss}/...``, from a real
``ThreadingHTTPServer`` on 127.0.0.1. The URL-to-file mapping is written out here on its
own, not taken from ``celestecli.sdss.layout``, so the tests check the client's URLs.
fpM masks stored plain are gzipped on the fly (``mtime=0``, so the bytes are reproducible),
as the SAS serves them. ``Range: bytes=N-`` is honoured. Faults can be injected per file
name pattern; every request is logged.
"""

import fnmatch
import gzip
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_R6 = r"(?P<r6>\d{6})"
_F4 = r"(?P<f4>\d{4})"
# SAS path below drN/ROOT/ -> (regex, local path template relative to the data dir).
_ROUTES = [
    (rf"photoObj/frames/301/(?P<run>\d+)/(?P<camcol>[1-6])/"
     rf"(?P<name>frame-[ugriz]-{_R6}-(?P=camcol)-{_F4}\.fits\.bz2)",
     "{run}/{camcol}/{field}/{name}"),
    (rf"photo/redux/301/(?P<run>\d+)/objcs/(?P<camcol>[1-6])/"
     rf"(?P<name>psField-{_R6}-(?P=camcol)-{_F4}\.fit)",
     "{run}/{camcol}/{field}/{name}"),
    (rf"photo/redux/301/(?P<run>\d+)/objcs/(?P<camcol>[1-6])/"
     rf"(?P<name>fpM-{_R6}-[ugriz](?P=camcol)-{_F4}\.fit\.gz)",
     "{run}/{camcol}/{field}/{name}"),
    (rf"photoObj/301/(?P<run>\d+)/(?P<camcol>[1-6])/"
     rf"(?P<name>photoObj-{_R6}-(?P=camcol)-{_F4}\.fits)",
     "{run}/{camcol}/{field}/{name}"),
    (rf"photoObj/301/(?P<run>\d+)/(?P<name>photoField-{_R6}-(?P<camcol>[1-6])\.fits)",
     "{run}/{camcol}/{name}"),
]
_RELEASE = re.compile(r"^/sas/dr(?P<dr>\d+)/(?P<root>boss|eboss)/(?P<rest>.+)$")


def sas_to_local(root: Path, url_path: str) -> Path | None:
    """Local file behind a SAS URL path, or None when the path is not a valid SAS path."""
    m = _RELEASE.match(url_path)
    if not m:
        return None
    dr, sas_root = int(m["dr"]), m["root"]
    if not (8 <= dr <= 17) or sas_root != ("boss" if dr <= 12 else "eboss"):
        return None
    for pattern, template in _ROUTES:
        r = re.fullmatch(pattern, m["rest"])
        if r and r["run"] == str(int(r["r6"])):
            field = int(r["f4"]) if "f4" in r.groupdict() else None
            return root / template.format(run=r["run"], camcol=r["camcol"], field=field,
                                          name=r["name"])
    return None


@dataclass
class Fault:
    """A fault served for files whose name matches ``pattern`` (fnmatch), ``times`` times.

    kinds: ``status`` (answer ``status`` with ``retry_after``), ``drop`` (send the headers
    and half the body, then close), ``stall`` (the same, but wait ``stall`` seconds before
    closing), ``short`` (a body ``missing`` bytes shorter than its
    Content-Length, then close), ``ignore_range`` (answer 200 with the whole body even to a
    Range request), ``corrupt`` (a bz2/gzip payload with flipped bytes in the middle),
    ``slow`` (the whole body, in pieces spread over ``stall`` seconds).
    """

    pattern: str
    kind: str
    times: float = 1
    status: int = 503
    retry_after: str | None = None
    missing: int = 1000
    stall: float = 0.0


@dataclass(frozen=True)
class Request:
    time: float
    path: str
    name: str
    range: str | None
    status: int
    user_agent: str | None


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that went away
            super().handle_error(request, client_address)


class SASServer:
    """A SAS look-alike on ``127.0.0.1:port`` for the duration of a ``with`` block."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.faults: list[Fault] = []
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._cache: dict[Path, bytes] = {}
        self._httpd = _QuietServer(("127.0.0.1", 0), _handler_class(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                        daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/sas"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._httpd.shutdown()
        self._httpd.server_close()

    def add_fault(self, pattern: str, kind: str, times: float = 1, **kw) -> Fault:
        fault = Fault(pattern, kind, times, **kw)
        self.faults.append(fault)
        return fault

    def content(self, url_path: str) -> bytes | None:
        """The bytes served (without faults) at a URL path below the host, or None (404)."""
        local = sas_to_local(self.root, url_path)
        if local is None:
            return None
        with self._lock:
            if local not in self._cache:
                if local.is_file():
                    self._cache[local] = local.read_bytes()
                elif local.suffix == ".gz" and local.with_suffix("").is_file():
                    self._cache[local] = gzip.compress(local.with_suffix("").read_bytes(),
                                                       mtime=0)
                else:
                    return None
            return self._cache[local]

    def gets(self, pattern: str = "*") -> list[Request]:
        """Logged GET requests for file names matching ``pattern``."""
        with self._lock:
            return [r for r in self.requests if fnmatch.fnmatch(r.name, pattern)]

    def _take_fault(self, name: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times > 0 and fnmatch.fnmatch(name, fault.pattern):
                    fault.times -= 1
                    return fault
        return None

    def _log(self, path: str, headers, status: int) -> None:
        with self._lock:
            self.requests.append(Request(time.monotonic(), path, path.rsplit("/", 1)[-1],
                                         headers.get("Range"), status,
                                         headers.get("User-Agent")))


def _handler_class(server: SASServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep test output clean
            pass

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            name = path.rsplit("/", 1)[-1]
            range_header = self.headers.get("Range")
            body = server.content(path)
            if body is None:
                return self._reply(path, HTTPStatus.NOT_FOUND, b"not found\n")
            fault = server._take_fault(name)
            kind = fault.kind if fault else None
            if kind == "status":
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                return self._reply(path, fault.status, b"busy\n", headers)
            if kind == "corrupt":
                mid = len(body) // 2
                body = body[:mid] + bytes(b ^ 0xFF for b in body[mid:mid + 64]) + body[mid + 64:]
            start = _range_start(range_header) if kind != "ignore_range" else None
            if start is not None and start >= len(body):
                return self._reply(path, HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE,
                                   b"", {"Content-Range": f"bytes */{len(body)}"})
            if start is not None:
                status, payload = HTTPStatus.PARTIAL_CONTENT, body[start:]
                headers = {"Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"}
            else:
                status, payload, headers = HTTPStatus.OK, body, {}
            if kind in ("drop", "stall"):
                return self._reply(path, status, payload, headers, send=len(payload) // 2,
                                   stall=fault.stall)
            if kind == "slow":
                return self._reply(path, status, payload, headers, spread=fault.stall)
            if kind == "short":
                return self._reply(path, status, payload, headers,
                                   send=max(0, len(payload) - fault.missing))
            return self._reply(path, status, payload, headers)

        def _reply(self, path, status, payload, headers=None, send=None, stall=0.0, spread=0.0):
            server._log(path, self.headers, int(status))
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Accept-Ranges", "bytes")
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if spread > 0.0:
                pieces = 10
                step = -(-len(payload) // pieces)
                for i in range(pieces):
                    self.wfile.write(payload[i * step:(i + 1) * step])
                    self.wfile.flush()
                    time.sleep(spread / pieces)
                return
            if send is None:
                self.wfile.write(payload)
                return
            # A broken transfer: part of the body, then the connection goes away.
            self.wfile.write(payload[:send])
            self.wfile.flush()
            time.sleep(stall)
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

    return Handler


def _range_start(value: str | None) -> int | None:
    m = re.fullmatch(r"\s*bytes=(\d+)-\s*", value or "")
    return int(m.group(1)) if m else None
