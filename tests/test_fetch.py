"""``celeste fetch`` against a local SAS look-alike (tests/sas_server.py) serving real SDSS files.

The end-to-end tests run the CLI in a subprocess as a user would, against a real HTTP server
on 127.0.0.1 that serves ``../shared/data/sdss`` at SAS URLs, with faults injected per file;
the last tests check the retry policy and header parsing directly.
"""

import errno
import gzip
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from sas_server import SASServer

from celestecli import locks
from celestecli.sdss import manifest as manifest_module
from celestecli.sdss.download import (
    Downloader,
    RetryPolicy,
    Transfer,
    content_range_start,
    retry_after_seconds,
)
from celestecli.sdss.manifest import Manifest

REPO = Path(__file__).resolve().parents[1]
SDSS = REPO.parent / "shared" / "data" / "sdss"
FIELD = "2583/2/136"
DR17 = "/sas/dr17/eboss/"
FRAME_R = "frame-r-002583-2-0136.fits.bz2"
PSFIELD = "psField-002583-2-0136.fit"


def expected_files(bands: str = "ugriz") -> dict[str, str]:
    """Local path (relative to the data dir) -> SAS path below drN/ROOT/, for field 2583/2/136.

    Spelled out by hand from ENGINEERING.md 5.1 and ARCHITECTURE.md 1.
    """
    files = {}
    for b in bands:
        files[f"2583/2/136/frame-{b}-002583-2-0136.fits.bz2"] = (
            f"photoObj/frames/301/2583/2/frame-{b}-002583-2-0136.fits.bz2")
        files[f"2583/2/136/fpM-002583-{b}2-0136.fit.gz"] = (
            f"photo/redux/301/2583/objcs/2/fpM-002583-{b}2-0136.fit.gz")
    files["2583/2/136/psField-002583-2-0136.fit"] = (
        "photo/redux/301/2583/objcs/2/psField-002583-2-0136.fit")
    files["2583/2/136/photoObj-002583-2-0136.fits"] = (
        "photoObj/301/2583/2/photoObj-002583-2-0136.fits")
    files["2583/2/photoField-002583-2.fits"] = "photoObj/301/2583/photoField-002583-2.fits"
    return files


@pytest.fixture
def sas():
    if not (SDSS / FIELD).is_dir():
        pytest.skip(f"../shared/data not found: {SDSS / FIELD} is missing")
    with SASServer(SDSS) as server:
        yield server


def celeste_env() -> dict[str, str]:
    """The environment of a ``celeste`` run from this checkout, with tiny retry waits."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["CELESTE_FETCH_BACKOFF"] = "0.01"
    return env


def celeste(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m celestecli ARGS`` from this checkout."""
    return subprocess.run([sys.executable, "-m", "celestecli", *args], input=stdin,
                          stdin=None if stdin is not None else subprocess.DEVNULL,
                          capture_output=True, text=True, env=celeste_env(), timeout=120)


def fetch(data_dir: Path, server: SASServer, *args: str, stdin: str | None = None):
    """``celeste --data-dir DATA_DIR fetch --base-url SERVER ARGS``."""
    return celeste("--data-dir", str(data_dir), "fetch", "--base-url", server.base_url, *args,
                   stdin=stdin)


def local_files(data_dir: Path) -> set[str]:
    return {p.relative_to(data_dir).as_posix() for p in data_dir.rglob("*")
            if p.is_file() and p.name != ".celeste-manifest.tsv"}


def assert_fetched(data_dir: Path, server: SASServer, bands: str = "ugriz") -> None:
    """Exactly the expected files are present (no .part), each byte-identical to what was served."""
    expected = expected_files(bands)
    assert local_files(data_dir) >= set(expected)
    for rel, sas_path in expected.items():
        served = server.content(DR17 + sas_path)
        assert served is not None, sas_path
        assert (data_dir / rel).read_bytes() == served, rel


def test_fetch_field_is_byte_identical_and_second_run_downloads_nothing(sas, tmp_path):
    result = fetch(tmp_path, sas, FIELD)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert local_files(tmp_path) == set(expected_files())
    assert_fetched(tmp_path, sas)
    # fpM masks arrive gzipped as the SAS serves them; their content is the stored mask.
    fpm = "2583/2/136/fpM-002583-r2-0136.fit"
    assert gzip.decompress((tmp_path / (fpm + ".gz")).read_bytes()) == (SDSS / fpm).read_bytes()
    gets = sas.gets()
    assert len(gets) == 13 and {g.status for g in gets} == {200}
    assert all(g.user_agent.startswith("celestecli/") for g in gets)
    assert "13 downloaded" in result.stderr and "0 failed" in result.stderr

    again = fetch(tmp_path, sas, FIELD)
    assert again.returncode == 0, again.stderr
    assert len(sas.gets()) == 13  # no request at all
    assert "0 downloaded" in again.stderr and "13 skipped" in again.stderr


def test_dry_run_prints_release_urls_and_touches_nothing(sas, tmp_path):
    dr17 = fetch(tmp_path / "d", sas, FIELD, "--bands", "r", "--dry-run")
    dr12 = fetch(tmp_path / "d", sas, FIELD, "--bands", "r", "--dry-run", "--release", "12")
    assert dr17.returncode == dr12.returncode == 0
    base = sas.base_url
    paths = expected_files("r").values()
    assert sorted(dr17.stdout.splitlines()) == sorted(f"{base}/dr17/eboss/{p}" for p in paths)
    assert sorted(dr12.stdout.splitlines()) == sorted(f"{base}/dr12/boss/{p}" for p in paths)
    assert sas.gets() == [] and not (tmp_path / "d").exists()


def test_bands_limit_frames_and_masks(sas, tmp_path):
    result = fetch(tmp_path, sas, FIELD, "--bands", "gz")
    assert result.returncode == 0, result.stderr
    assert local_files(tmp_path) == set(expected_files("gz"))
    assert_fetched(tmp_path, sas, "gz")


def test_transient_errors_are_retried_honouring_retry_after(sas, tmp_path):
    sas.add_fault(PSFIELD, "status", status=503, retry_after="1")
    sas.add_fault(FRAME_R, "status", times=2, status=500)
    sas.add_fault("photoField-*", "status", status=429, retry_after="0")
    result = fetch(tmp_path, sas, FIELD, "--bands", "r")
    assert result.returncode == 0, result.stderr
    assert_fetched(tmp_path, sas, "r")
    assert [g.status for g in sas.gets(FRAME_R)] == [500, 500, 200]
    assert [g.status for g in sas.gets("photoField-*")] == [429, 200]
    first, second = sas.gets(PSFIELD)
    assert (first.status, second.status) == (503, 200)
    assert second.time - first.time >= 0.95  # Retry-After: 1 beats --retry-wait 0.01
    assert "HTTP 503" in result.stderr and "HTTP 500" in result.stderr


def test_broken_transfers_resume_with_range(sas, tmp_path):
    sas.add_fault(FRAME_R, "drop")
    sas.add_fault(PSFIELD, "short", missing=1000)
    sas.add_fault("photoField-*", "stall", stall=3.0)  # half the body, then silence
    result = fetch(tmp_path, sas, FIELD, "--bands", "r", "--timeout", "1")
    assert result.returncode == 0, result.stderr
    assert_fetched(tmp_path, sas, "r")
    frame_len = len(sas.content(DR17 + expected_files("r")["2583/2/136/" + FRAME_R]))
    first, second = sas.gets(FRAME_R)
    assert first.range is None and second.range == f"bytes={frame_len // 2}-"
    assert second.status == 206
    first, second = sas.gets(PSFIELD)
    assert second.range == f"bytes={(SDSS / FIELD / PSFIELD).stat().st_size - 1000}-"
    photofield_len = (SDSS / "2583/2/photoField-002583-2.fits").stat().st_size
    assert [g.range for g in sas.gets("photoField-*")] == [None, f"bytes={photofield_len // 2}-"]
    assert "connection closed after" in result.stderr and "timed out" in result.stderr


def test_server_ignoring_range_restarts_cleanly(sas, tmp_path):
    sas.add_fault(FRAME_R, "drop")
    sas.add_fault(FRAME_R, "ignore_range", times=float("inf"))
    result = fetch(tmp_path, sas, FIELD, "--bands", "r")
    assert result.returncode == 0, result.stderr
    assert_fetched(tmp_path, sas, "r")
    first, second = sas.gets(FRAME_R)
    assert second.range is not None and second.status == 200
    assert "ignored the byte range" in result.stderr


def test_corrupt_payload_fails_that_file_only(sas, tmp_path):
    sas.add_fault(FRAME_R, "corrupt", times=float("inf"))
    result = fetch(tmp_path, sas, FIELD, "--bands", "r", "--tries", "3")
    assert result.returncode == 3, result.stderr
    frame_url = f"{sas.base_url}/dr17/eboss/photoObj/frames/301/2583/2/{FRAME_R}"
    assert frame_url in result.stderr and "bzip2" in result.stderr
    assert "field 2583/2/136" in result.stderr
    assert len(sas.gets(FRAME_R)) == 3
    # Nothing of the frame is left, under its final name or as .part; the rest is complete.
    assert local_files(tmp_path) == set(expected_files("r")) - {f"2583/2/136/{FRAME_R}"}
    for rel, sas_path in expected_files("r").items():
        if not rel.endswith(FRAME_R):
            assert (tmp_path / rel).read_bytes() == sas.content(DR17 + sas_path)


def test_missing_field_among_two_is_a_partial_failure(sas, tmp_path):
    result = fetch(tmp_path, sas, "-", "--bands", "r", stdin=f"{FIELD}\n2583/2/137\n")
    assert result.returncode == 3, result.stderr
    assert_fetched(tmp_path, sas, "r")
    assert not (tmp_path / "2583/2/137").exists()
    assert "4 of 9 failed" in result.stderr  # photoField is shared by the camcol's fields
    assert "field 2583/2/137: HTTP 404 Not Found (not in DR17" in result.stderr
    assert f"{sas.base_url}/dr17/eboss/photoObj/frames/301/2583/2/frame-r-002583-2-0137.fits.bz2" \
        in result.stderr
    assert len(sas.gets("*-0137.*")) == 4  # 404 is not retried


def test_all_files_failing_exits_1(sas, tmp_path):
    result = fetch(tmp_path, sas, "9999/1/1", "--bands", "r")
    assert result.returncode == 1, result.stderr
    assert "5 of 5 failed" in result.stderr and "HTTP 404" in result.stderr
    assert local_files(tmp_path) == set()


def test_a_server_that_cannot_be_reached_is_not_retried_for_every_file(tmp_path):
    with socket.socket() as probe:  # a port nothing listens on: connections are refused
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/sas"
    result = celeste("--data-dir", str(tmp_path), "fetch", "--base-url", closed,
                     "2583/2/136", "3900/6/269", "--jobs", "2")
    assert result.returncode == 1 and "26 of 26 failed" in result.stderr
    retried = result.stderr.count("Connection refused; try ")
    not_tried = result.stderr.count("not tried: the server could not be reached")
    # the two files in flight use up their tries; the other 24 are not tried at all
    assert retried <= 2 * 4 and not_tried >= 24, result.stderr
    assert local_files(tmp_path) == set()


def test_part_files_of_an_interrupted_run_are_resumed_or_discarded(sas, tmp_path):
    field_dir = tmp_path / FIELD
    field_dir.mkdir(parents=True)
    frame = sas.content(DR17 + expected_files("r")["2583/2/136/" + FRAME_R])
    (field_dir / (FRAME_R + ".part")).write_bytes(frame[:1_000_000])
    (field_dir / (PSFIELD + ".part")).write_bytes(b"garbage " * 625)  # not a psField prefix
    photoobj = "photoObj-002583-2-0136.fits"
    (field_dir / (photoobj + ".part")).write_bytes(bytes(9000))  # longer than the file
    result = fetch(tmp_path, sas, FIELD, "--bands", "r")
    assert result.returncode == 0, result.stderr
    assert local_files(tmp_path) == set(expected_files("r"))
    assert_fetched(tmp_path, sas, "r")
    assert [(g.range, g.status) for g in sas.gets(FRAME_R)] == [("bytes=1000000-", 206)]
    assert [(g.range, g.status) for g in sas.gets(PSFIELD)] == [("bytes=5000-", 206), (None, 200)]
    assert [(g.range, g.status) for g in sas.gets(photoobj)] == [("bytes=9000-", 416), (None, 200)]
    assert "corrupt" in result.stderr


def test_ctrl_c_exits_130_and_keeps_the_part_files(sas, tmp_path):
    sas.add_fault("*", "slow", times=float("inf"), stall=2.0)
    cmd = [sys.executable, "-m", "celestecli", "--data-dir", str(tmp_path), "fetch",
           "--base-url", sas.base_url, FIELD, "--bands", "r"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, env=celeste_env())
    deadline = time.monotonic() + 60
    while not list(tmp_path.rglob("*.part")):  # bytes are arriving
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "celeste: interrupted" in stderr and "Traceback" not in stderr
    assert list(tmp_path.rglob("*.part"))  # for the next run to resume


def test_a_part_file_that_is_already_whole_is_not_fetched_again(sas, tmp_path):
    field_dir = tmp_path / FIELD
    field_dir.mkdir(parents=True)
    psfield = (SDSS / FIELD / PSFIELD).read_bytes()
    (field_dir / (PSFIELD + ".part")).write_bytes(psfield)  # killed before its rename
    result = fetch(tmp_path, sas, FIELD, "--bands", "r")
    assert result.returncode == 0, result.stderr
    assert [(g.range, g.status) for g in sas.gets(PSFIELD)] == [(f"bytes={len(psfield)}-", 416)]
    assert (field_dir / PSFIELD).read_bytes() == psfield
    assert local_files(tmp_path) == set(expected_files("r"))


def test_present_files_are_verified_not_trusted(sas, tmp_path):
    field_dir = tmp_path / FIELD
    field_dir.mkdir(parents=True)
    (field_dir / FRAME_R).write_bytes((SDSS / FIELD / FRAME_R).read_bytes())
    psfield = (SDSS / FIELD / PSFIELD).read_bytes()
    (field_dir / PSFIELD).write_bytes(psfield[:-2880])  # one FITS block short
    fpm_plain = "fpM-002583-r2-0136.fit"
    (field_dir / fpm_plain).write_bytes((SDSS / FIELD / fpm_plain).read_bytes())
    result = fetch(tmp_path, sas, FIELD, "--bands", "r")
    assert result.returncode == 0, result.stderr
    assert sas.gets(FRAME_R) == [] and sas.gets("fpM-*") == []  # valid copies count
    assert len(sas.gets(PSFIELD)) == 1  # the truncated one was replaced
    assert (field_dir / PSFIELD).read_bytes() == psfield
    assert not (field_dir / (fpm_plain + ".gz")).exists()
    assert "2 skipped" in result.stderr

    n_before = len(sas.gets())
    again = fetch(tmp_path, sas, FIELD, "--bands", "r")
    assert again.returncode == 0 and len(sas.gets()) == n_before


def test_a_file_damaged_since_it_was_fetched_is_fetched_again(sas, tmp_path):
    assert fetch(tmp_path, sas, FIELD, "--bands", "r").returncode == 0
    psfield = tmp_path / FIELD / PSFIELD
    good = psfield.read_bytes()
    damaged = bytearray(good)
    damaged[-1000] ^= 0xFF  # a flipped byte in a table: the FITS structure stays valid
    psfield.write_bytes(bytes(damaged))
    n_before = len(sas.gets())
    again = fetch(tmp_path, sas, FIELD, "--bands", "r")
    assert again.returncode == 0, again.stderr
    assert "changed since it was fetched" in again.stderr
    assert [g.name for g in sas.gets()[n_before:]] == [PSFIELD]
    assert psfield.read_bytes() == good


def test_a_corrupt_copy_is_deleted_when_another_form_is_fetched(sas, tmp_path):
    field_dir = tmp_path / FIELD
    field_dir.mkdir(parents=True)
    plain = field_dir / "fpM-002583-r2-0136.fit"
    plain.write_bytes((SDSS / FIELD / plain.name).read_bytes()[:-2880])  # truncated
    result = fetch(tmp_path, sas, FIELD, "--bands", "r")
    assert result.returncode == 0, result.stderr
    assert not plain.exists()  # readers would have found it before the fetched .gz
    assert (field_dir / (plain.name + ".gz")).is_file()


def test_files_from_another_release_are_kept_with_one_warning(sas, tmp_path):
    assert fetch(tmp_path, sas, FIELD, "--bands", "r").returncode == 0
    n_before = len(sas.gets())
    dr12 = fetch(tmp_path, sas, FIELD, "--bands", "r", "--release", "12")
    assert dr12.returncode == 0, dr12.stderr
    assert len(sas.gets()) == n_before and "5 skipped" in dr12.stderr
    assert dr12.stderr.count("was fetched from") == 1 and "its own --data-dir" in dr12.stderr


def test_verified_files_need_no_lock_and_a_manifest_that_cannot_be_written_only_warns(
        sas, tmp_path, monkeypatch, caplog):
    def transfers(data_dir):
        rels = ["2583/2/136/" + PSFIELD, "2583/2/136/" + FRAME_R]
        return [Transfer(sas.base_url + "/dr17/eboss/" + expected_files()[rel], data_dir / rel,
                         "field 2583/2/136") for rel in rels]

    mirror = tmp_path / "mirror"
    assert [Downloader(Manifest(mirror)).fetch(t).status for t in transfers(mirror)] == [
        "downloaded", "downloaded"]

    def no_lock_files_here(_lock):  # a read-only data directory
        raise PermissionError(errno.EACCES, "Permission denied")

    with monkeypatch.context() as patch:
        patch.setattr(locks.FileLock, "acquire", no_lock_files_here)
        assert [Downloader(Manifest(mirror)).fetch(t).status for t in transfers(mirror)] == [
            "skipped", "skipped"]

    shared = tmp_path / "shared"
    (shared / ".celeste-manifest.tsv").mkdir(parents=True)  # cannot be appended to
    with caplog.at_level(logging.WARNING, logger="celestecli.sdss.download"):
        outcomes = [Downloader(Manifest(shared)).fetch(t) for t in transfers(shared)]
    assert [o.status for o in outcomes] == ["downloaded", "downloaded"]
    warnings = [r.getMessage() for r in caplog.records if "cannot record" in r.getMessage()]
    assert len(warnings) == 2  # once per Downloader, i.e. per run


def test_a_file_that_cannot_be_read_is_reported_not_deleted(sas, tmp_path, monkeypatch):
    rel = "2583/2/136/" + PSFIELD
    transfer = Transfer(sas.base_url + "/dr17/eboss/" + expected_files()[rel], tmp_path / rel,
                        "field 2583/2/136")
    assert Downloader(Manifest(tmp_path)).fetch(transfer).status == "downloaded"

    def io_error(_path):  # e.g. a failing disk, or a file another user may not read
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(manifest_module, "sha256_file", io_error)
    outcome = Downloader(Manifest(tmp_path)).fetch(transfer)
    assert outcome.status == "failed" and "Input/output error" in outcome.error.problem
    assert (tmp_path / rel).read_bytes() == (SDSS / rel).read_bytes()


def test_two_concurrent_fetches_download_each_file_once(sas, tmp_path):
    sas.add_fault("*", "slow", times=float("inf"), stall=2.0)  # each file takes 2 s
    cmd = [sys.executable, "-m", "celestecli", "--data-dir", str(tmp_path), "fetch",
           "--base-url", sas.base_url, FIELD, "--bands", "r"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             stdin=subprocess.DEVNULL, env=celeste_env())
    deadline = time.monotonic() + 60
    while not sas.gets() and time.monotonic() < deadline:  # the first run is downloading
        time.sleep(0.05)
    second = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                            env=celeste_env(), timeout=120)
    first_err = first.communicate(timeout=120)[1]
    assert first.returncode == 0, first_err
    assert second.returncode == 0, second.stderr
    assert "being fetched by another process" in first_err + second.stderr
    assert local_files(tmp_path) == set(expected_files("r"))  # no .part or lock files left
    assert_fetched(tmp_path, sas, "r")
    names = [g.name for g in sas.gets()]
    assert sorted(names) == sorted(set(names)) and len(names) == 5  # each file once


def test_a_file_system_without_locking_is_warned_about_once_and_still_fetched(
        sas, tmp_path, monkeypatch, caplog):
    def flock_unsupported(fd, operation):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(locks.fcntl, "flock", flock_unsupported)  # as on Lustre without -o flock
    downloader = Downloader(Manifest(tmp_path))
    rels = ["2583/2/136/" + PSFIELD, "2583/2/136/" + FRAME_R]
    with caplog.at_level(logging.WARNING, logger="celestecli.sdss.download"):
        outcomes = [downloader.fetch(Transfer(sas.base_url + "/dr17/eboss/" + expected_files()[rel],
                                              tmp_path / rel, "field 2583/2/136"))
                    for rel in rels]
    assert [o.status for o in outcomes] == ["downloaded", "downloaded"]
    for rel in rels:
        assert (tmp_path / rel).read_bytes() == (SDSS / rel).read_bytes()
    warnings = [r.getMessage() for r in caplog.records if "cannot lock files" in r.getMessage()]
    assert len(warnings) == 1 and str(tmp_path) in warnings[0]


@pytest.mark.parametrize("args", [["--bands", "rx"], ["--base-url", "ftp://example.org"],
                                  ["--release", "18"], ["--jobs", "0"]])
def test_bad_options_are_usage_errors(sas, tmp_path, args):
    result = fetch(tmp_path, sas, FIELD, *args)  # a second --base-url overrides the first
    assert result.returncode == 2, result.stderr
    assert args[0] in result.stderr
    assert sas.gets() == [] and not tmp_path.joinpath("2583").exists()


def test_retry_waits_grow_and_honour_retry_after_within_a_cap():
    policy = RetryPolicy(tries=5, backoff=1.0, max_wait=10.0)
    waits = [policy.wait(n) for n in (1, 2, 3)]
    for n, wait in enumerate(waits):
        assert 2**n <= wait <= 1.25 * 2**n  # doubling, with at most 25 % jitter
    assert policy.wait(1, retry_after=7.0) == 7.0  # the server asks for longer: it wins
    assert 1.0 <= policy.wait(1, retry_after=0.0) <= 1.25
    assert policy.wait(1, retry_after=3600.0) == 10.0 and policy.wait(9) == 10.0


def test_retry_after_and_content_range_headers_are_parsed():
    assert retry_after_seconds("120") == 120.0
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= retry_after_seconds(soon) <= 30
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None
    assert content_range_start("bytes 1000-3999/4000") == 1000
    assert content_range_start("bytes */4000") is None and content_range_start(None) is None
