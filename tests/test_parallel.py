"""Many fields on one machine: process pool, skip/force, locks, interrupts, status file.

The acceptance checks run the real CLI in subprocesses over simulated fields (see
field_runs.py): pool catalogs identical to single-field runs, a corrupt field isolated (exit 3),
a SIGKILLed run completed by the next, SIGTERM/SIGINT leaving no partial output, a rerun with
nothing to do, two concurrent runs never processing a field twice.  The building blocks
(locks, fingerprint, status file, worker sizing) are tested directly.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from field_runs import (
    BAD,
    BAD_FILE,
    GOOD,
    assert_same_sources,
    catalog_of,
    celeste,
    celeste_argv,
    cli_env,
    infer_args,
    leftovers,
)

from celestecli.catalog import InputFile, OutputError, Provenance, read_catalog, write_catalog
from celestecli.catalog.schema import empty_catalog
from celestecli.fields import FieldID
from celestecli.infer.field import InferSettings, Region
from celestecli.locks import FileLock, lock_path
from celestecli.parallel.fingerprint import KEYWORD, fingerprint, stored_fingerprint
from celestecli.parallel.jobs import DONE, FAILED, JobConfig, Outcome
from celestecli.parallel.pool import run_pool
from celestecli.parallel.sizing import plan_workers
from celestecli.parallel.status import StatusWriter
from celestecli.revision import code_digest


def statuses(path: Path) -> dict[str, dict]:
    """The status-file records of a run, by field."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    by_field = {r["field"]: r for r in records}
    assert len(by_field) == len(records), "a field reported twice by one run"
    return by_field


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}


# --- the pool, end to end ---------------------------------------------------------------------


def test_pool_catalogs_match_single_field_runs_and_isolate_a_corrupt_field(pool_run,
                                                                           single_catalogs):
    run = pool_run.run
    print(run.stderr)
    assert run.returncode == 3, run.stderr
    for fid in GOOD:
        assert_same_sources(catalog_of(pool_run.out, fid), catalog_of(single_catalogs, fid))
    assert not catalog_of(pool_run.out, BAD).exists()
    assert leftovers(pool_run.out) == []
    # the summary names the bad field and its file
    assert "partial failure: 1 of 5 failed" in run.stderr
    assert f"{BAD}: " in run.stderr and BAD_FILE.rsplit("/", 1)[1] in run.stderr
    assert "5 fields: 4 done, 0 up to date, 0 busy in another run, 1 failed" in run.stderr
    # workers' logs reach the parent's stderr, each record once
    for fid in GOOD:
        assert run.stderr.count(f"{fid}: 15 initial sources") == 1
    records = statuses(pool_run.status)
    assert {f: r["status"] for f, r in records.items()} == {
        **{str(f): "done" for f in GOOD}, str(BAD): "failed"}
    assert "corrupt or truncated" in records[str(BAD)]["error"]
    assert all(records[str(f)]["sources"] == 15 for f in GOOD)
    assert len({records[str(f)]["worker"] for f in GOOD}) == 2, "both workers took fields"
    assert run.stdout == ""  # nothing on stdout unless asked for


def test_rerun_with_nothing_to_do_is_quick_and_changes_nothing(pool_run, sim_data, tmp_path):
    assert pool_run.run.returncode == 3
    out = tmp_path / "catalogs"
    shutil.copytree(pool_run.out, out)
    before = snapshot(out)
    start = time.perf_counter()
    run = celeste(*infer_args(sim_data, out, "-j", "2", "--threads", "1",
                              "--status-file", "-", *GOOD))
    elapsed = time.perf_counter() - start
    print(f"rerun with nothing to do: {elapsed:.2f} s\n{run.stderr}")
    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in run.stdout.splitlines()]
    assert sorted(r["field"] for r in records) == sorted(map(str, GOOD))
    assert {r["status"] for r in records} == {"skipped"}
    assert snapshot(out) == before
    assert elapsed < 10


def test_force_redoes_an_up_to_date_field_and_threads_are_clamped(pool_run, sim_data, tmp_path):
    out = tmp_path / "catalogs"
    shutil.copytree(pool_run.out, out)
    fid = GOOD[0]
    old = read_catalog(catalog_of(out, fid)).meta["provenance"]
    run = celeste(*infer_args(sim_data, out, "--threads", "512", "--force",
                              "--status-file", tmp_path / "s.jsonl", fid))
    assert run.returncode == 0, run.stderr
    assert "exceeds the" in run.stderr and "available cores" in run.stderr
    assert statuses(tmp_path / "s.jsonl")[str(fid)]["status"] == "done"
    new = read_catalog(catalog_of(out, fid)).meta["provenance"]
    assert new.extra[KEYWORD] == old.extra[KEYWORD]
    assert new.n_threads < 512
    assert_same_sources(catalog_of(out, fid), catalog_of(pool_run.out, fid))


def test_changed_settings_make_a_catalog_out_of_date(pool_run, sim_data, tmp_path):
    out = tmp_path / "catalogs"
    shutil.copytree(pool_run.out, out)
    fid = GOOD[1]
    run = celeste(*infer_args(sim_data, out, "--seed", "7", "--status-file", "-", fid))
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["status"] == "done"
    # the user is told that the existing catalog is replaced, and why
    assert (f"{fid}: {catalog_of(out, fid)} was made from other inputs, settings or celeste "
            "code; replacing it") in run.stderr
    assert read_catalog(catalog_of(out, fid)).meta["provenance"].seed == 7


def test_a_corrupt_existing_catalog_is_redone_and_an_intact_one_skipped(pool_run, sim_data,
                                                                      tmp_path):
    out = tmp_path / "catalogs"
    shutil.copytree(pool_run.out, out)
    corrupt, intact = GOOD[2], GOOD[3]
    target = catalog_of(out, corrupt)
    with open(target, "r+b") as fh:  # cut short, as by a full disk or a bad copy
        fh.truncate(target.stat().st_size // 2)
    run = celeste(*infer_args(sim_data, out, "--status-file", "-", corrupt, intact))
    assert run.returncode == 0, run.stderr
    assert "unreadable, redoing it" in run.stderr
    records = {r["field"]: r["status"] for r in map(json.loads, run.stdout.splitlines())}
    assert records == {str(corrupt): "done", str(intact): "skipped"}
    assert_same_sources(target, catalog_of(pool_run.out, corrupt))


def test_a_field_locked_by_another_process_is_left_to_it(sim_data, tmp_path):
    fid = GOOD[0]
    with FileLock(catalog_of(tmp_path, fid)) as lock:
        assert lock.held
        run = celeste(*infer_args(sim_data, tmp_path, "--status-file", "-", fid))
    assert run.returncode == 0, run.stderr
    record = json.loads(run.stdout)
    assert record["status"] == "busy"
    assert str(lock.path) in record["error"]
    assert not catalog_of(tmp_path, fid).exists()


# --- interrupted and concurrent runs --------------------------------------------------------


def wait_for_first_catalog(proc: subprocess.Popen, out: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not any(out.glob("celeste-*.fits")):
        assert proc.poll() is None, f"the run ended early: {proc.communicate()}"
        assert time.monotonic() < deadline, "no catalog appeared"
        time.sleep(0.05)


def test_sigkilled_run_is_completed_by_the_next(sim_data, single_catalogs, tmp_path):
    out = tmp_path / "catalogs"
    out.mkdir()
    # a temporary file left by some earlier run that died while writing
    stale = out / f".{catalog_of(out, GOOD[3]).name}.99999.deadbeef.part"
    stale.write_bytes(b"SIMPLE  = half a catalog")
    fields = GOOD[1:]
    argv = celeste_argv(*infer_args(sim_data, out, "-j", "2", "--threads", "1", *fields))
    proc = subprocess.Popen(argv, env=cli_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_first_catalog(proc, out)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    done_before = sorted(p.name for p in out.glob("celeste-*.fits"))
    print("catalogs when killed:", done_before, "other files:", leftovers(out))
    assert len(done_before) < len(fields)
    for name in done_before:
        read_catalog(out / name)  # complete and valid (checksums verified)

    rerun = celeste(*infer_args(sim_data, out, "-j", "2", "--threads", "1",
                                "--status-file", tmp_path / "status.jsonl", *fields))
    print(rerun.stderr)
    assert rerun.returncode == 0, rerun.stderr
    records = statuses(tmp_path / "status.jsonl")
    # the killed run's workers died with it: no field is still locked
    assert not [f for f, r in records.items() if r["status"] == "busy"]
    assert sorted(f for f, r in records.items() if r["status"] == "skipped") == sorted(
        str(f) for f in fields if catalog_of(out, f).name in done_before)
    for fid in fields:
        assert_same_sources(catalog_of(out, fid), catalog_of(single_catalogs, fid))
    assert leftovers(out) == []


def test_a_killed_worker_costs_no_field(sim_data, single_catalogs, tmp_path):
    out = tmp_path / "catalogs"
    out.mkdir()
    argv = celeste_argv(*infer_args(sim_data, out, "-j", "2", "--threads", "1",
                                    "--status-file", tmp_path / "status.jsonl", *GOOD))
    proc = subprocess.Popen(argv, env=cli_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(out.glob(".*.lock")):  # a field has started in a worker
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    os.kill(int(children[0]), signal.SIGKILL)  # as the out-of-memory killer would
    stdout, stderr = proc.communicate(timeout=180)
    print(stderr)
    assert proc.returncode == 0
    assert "a worker process died while running" in stderr
    # Every field is done; one whose catalog the other worker had just written when the pool
    # broke (its result lost with the pool) is run again and found up to date: skipped.
    status = {f: r["status"] for f, r in statuses(tmp_path / "status.jsonl").items()}
    assert set(status) == {str(f) for f in GOOD}
    assert set(status.values()) <= {"done", "skipped"}
    assert list(status.values()).count("skipped") <= 1, status
    for fid in GOOD:
        assert_same_sources(catalog_of(out, fid), catalog_of(single_catalogs, fid))
    assert leftovers(out) == []


def crashes_on_field_3(config, fid) -> Outcome:
    """A pool job whose worker dies on field 9999/1/3 and that succeeds on the others."""
    if fid.field == 3:
        os._exit(9)
    time.sleep(0.1)
    return Outcome(str(fid), DONE)


def test_the_field_that_kills_its_worker_fails_alone(tmp_path):
    fields = [FieldID(9999, 1, i) for i in range(1, 7)]
    config = JobConfig(data_dir=tmp_path, out_dir=tmp_path, settings=InferSettings())
    outcomes = []
    run_pool(config, fields, 2, outcomes.append, job=crashes_on_field_3)
    status = {o.field: o.status for o in outcomes}
    assert len(outcomes) == len(fields)
    assert status == {str(f): FAILED if f.field == 3 else DONE for f in fields}
    assert "worker process died" in next(o.error for o in outcomes if o.status == FAILED)


def crashes_on_field_2_while_field_1_is_reported(config, fid) -> Outcome:
    """Field 1 ends at once; field 2's worker dies while the parent is still reporting it."""
    if fid.field == 2:
        time.sleep(0.2)
        os._exit(9)
    time.sleep(0.05 if fid.field == 1 else 0.5)
    return Outcome(str(fid), DONE)


def test_a_worker_dying_between_two_submissions_costs_no_field(tmp_path):
    fields = [FieldID(9999, 1, i) for i in range(1, 6)]
    config = JobConfig(data_dir=tmp_path, out_dir=tmp_path, settings=InferSettings())
    outcomes = []

    def slow_report(outcome):  # the worker dies meanwhile; the next submission meets it
        time.sleep(0.5)
        outcomes.append(outcome)

    run_pool(config, fields, 2, slow_report, job=crashes_on_field_2_while_field_1_is_reported)
    assert {o.field: o.status for o in outcomes} == {
        str(f): FAILED if f.field == 2 else DONE for f in fields}


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_terminated_run_leaves_no_partial_output(sim_data, tmp_path, sig, code):
    out = tmp_path / "catalogs"
    argv = celeste_argv(*infer_args(sim_data, out, "-j", "2", "--threads", "1", *GOOD))
    proc = subprocess.Popen(argv, env=cli_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_first_catalog(proc, out)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=30)
    print(stderr)
    assert proc.returncode == code
    assert ("terminated; " if sig == signal.SIGTERM else "interrupted; ") in stderr
    catalogs = list(out.glob("celeste-*.fits"))
    assert 1 <= len(catalogs) < len(GOOD)
    for path in catalogs:
        read_catalog(path)
    # the workers were stopped and cleaned up after themselves: no lock, no temporary file
    assert leftovers(out) == []


def test_two_concurrent_runs_never_process_a_field_twice(sim_data, single_catalogs, tmp_path):
    out = tmp_path / "catalogs"
    procs = []
    for name in ("a", "b"):
        argv = celeste_argv(*infer_args(sim_data, out, "--threads", "1",
                                        "--status-file", tmp_path / f"{name}.jsonl", *GOOD))
        procs.append(subprocess.Popen(argv, env=cli_env(), stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True))
    for proc in procs:
        _, stderr = proc.communicate(timeout=180)
        assert proc.returncode == 0, stderr
    a, b = statuses(tmp_path / "a.jsonl"), statuses(tmp_path / "b.jsonl")
    print({f: (a[f]["status"], b[f]["status"]) for f in a})
    for fid in map(str, GOOD):
        pair = sorted([a[fid]["status"], b[fid]["status"]])
        assert pair in (["busy", "done"], ["done", "skipped"]), f"{fid}: {pair}"
    for fid in GOOD:
        assert_same_sources(catalog_of(out, fid), catalog_of(single_catalogs, fid))
    assert leftovers(out) == []


# --- building blocks ------------------------------------------------------------------------


def test_output_lock_survives_another_run_removing_the_empty_directory(tmp_path, monkeypatch):
    from celestecli.parallel.jobs import _output_lock

    target = tmp_path / "out" / "celeste-009999-1-0001.fits"
    real_acquire = FileLock.acquire
    removals = []

    def acquire_after_a_removal(lock):
        if not removals:  # another run removes the directory it made and left empty
            removals.append(target.parent)
            target.parent.rmdir()
        return real_acquire(lock)

    monkeypatch.setattr(FileLock, "acquire", acquire_after_a_removal)
    with _output_lock(target) as lock:
        assert lock.held and removals == [target.parent]
    assert list(target.parent.iterdir()) == []


def test_field_lock_is_exclusive_and_removed_on_release(tmp_path):
    target = tmp_path / "celeste-000001-1-0001.fits"
    first, second = FileLock(target), FileLock(target)
    assert first.acquire()
    assert lock_path(target).exists()
    assert not second.acquire()  # flock: separate open files conflict even in one process
    assert first.holder().split()[1].isdigit()
    first.release()
    assert not lock_path(target).exists()
    assert second.acquire()
    second.release()


def test_lock_taken_on_a_removed_file_is_retried(tmp_path):
    """A lock won on a lock file its previous holder just removed is retaken on a live file."""
    target = tmp_path / "x.fits"
    holder = FileLock(target)
    assert holder.acquire()
    waiter = FileLock(target)
    result = {}

    def contend():
        while not (ok := waiter.acquire()):
            time.sleep(0.001)
        result["ok"] = ok

    thread = threading.Thread(target=contend)
    thread.start()
    time.sleep(0.05)
    holder.release()
    thread.join(5)
    assert result == {"ok": True}
    assert lock_path(target).exists()
    assert not FileLock(target).acquire()
    waiter.release()


def _inputs(*hashes):
    return [InputFile(f"/data/f{i}.fits", h) for i, h in enumerate(hashes)]


def test_fingerprint_covers_inputs_result_settings_version_and_code():
    settings = InferSettings(passes=2)
    base = fingerprint(_inputs("a", "b"), settings, "1.0")
    assert len(base) == 64
    assert fingerprint(_inputs("a", "b"), settings, "1.0", code=code_digest()) == base
    assert fingerprint(_inputs("a", "b"), settings, "1.0", code="rebuilt") != base
    assert fingerprint(_inputs("a", "b"), settings, "1.0") == base
    assert fingerprint(list(reversed(_inputs("a", "b"))), settings, "1.0") == base
    moved = [InputFile("/elsewhere/" + f.path.rsplit("/", 1)[1], f.sha256)
             for f in _inputs("a", "b")]
    assert fingerprint(moved, settings, "1.0") == base
    assert fingerprint(_inputs("a", "c"), settings, "1.0") != base
    assert fingerprint(_inputs("a", "b"), settings, "1.1") != base
    for changed in (replace(settings, passes=3), replace(settings, seed=1),
                    replace(settings, init="detect"),
                    replace(settings, region=Region.parse("0:10,0:10")),
                    replace(settings, trust_region={**settings.trust_region, "max_iter": 1})):
        assert fingerprint(_inputs("a", "b"), changed, "1.0") != base
    assert fingerprint(_inputs("a", "b"), replace(settings, threads=8), "1.0") == base


@pytest.mark.parametrize("name", ["c.fits", "c.fits.gz", "c.ecsv"])
def test_stored_fingerprint_reads_back_what_was_written(tmp_path, name):
    path = tmp_path / name
    write_catalog(empty_catalog(2), path, provenance=Provenance(extra={KEYWORD: "ab" * 32}))
    assert stored_fingerprint(path) == "ab" * 32


def test_stored_fingerprint_is_none_when_absent_unreadable_or_csv(tmp_path):
    assert stored_fingerprint(tmp_path / "missing.fits") is None
    write_catalog(empty_catalog(2), tmp_path / "c.csv", provenance=Provenance(extra={KEYWORD: "x"}))
    assert stored_fingerprint(tmp_path / "c.csv") is None
    write_catalog(empty_catalog(2), tmp_path / "plain.fits")
    assert stored_fingerprint(tmp_path / "plain.fits") is None
    truncated = tmp_path / "t.fits"
    write_catalog(empty_catalog(2), truncated, provenance=Provenance(extra={KEYWORD: "y"}))
    truncated.write_bytes(truncated.read_bytes()[:4000])
    assert stored_fingerprint(truncated) is None


def test_status_lines_from_concurrent_writers_stay_whole(tmp_path):
    path = tmp_path / "status.jsonl"

    def append(k):
        writer = StatusWriter(path)
        for i in range(100):
            writer.write({"field": f"{k}/1/{i}", "status": "done", "error": "x" * 5000})

    threads = [threading.Thread(target=append, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == 400
    assert len({r["field"] for r in records}) == 400
    assert {"time", "host", "pid"} <= set(records[0])


def test_available_cores_are_those_the_process_started_with():
    """OMP_PROC_BIND makes GNU OpenMP pin the initial thread as it loads; the count of cores a
    run may use must not shrink with it (the Slurm scripts set OMP_PROC_BIND)."""
    code = ("import os; before = len(os.sched_getaffinity(0)); "
            "from celestecli.threads import available_cores; "
            "print(before, available_cores(), len(os.sched_getaffinity(0)))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=cli_env(OMP_PROC_BIND="close", OMP_PLACES="cores"), check=True)
    before, available, pinned = map(int, run.stdout.split())
    print(f"cores at start {before}, available_cores() {available}, pinned now {pinned}")
    assert available == before


def test_status_file_directories_are_made_and_unwritable_ones_fail_before_any_work(tmp_path):
    StatusWriter(tmp_path / "fresh" / "out" / "status.jsonl")
    assert (tmp_path / "fresh" / "out" / "status.jsonl").is_file()
    (tmp_path / "afile").write_text("")
    with pytest.raises(OutputError, match="afile/status.jsonl: .*afile is not a directory"):
        StatusWriter(tmp_path / "afile" / "status.jsonl")


@pytest.mark.parametrize("jobs, threads, n_fields, cores, expected", [
    (2, 1, 4, 2, (2, 1)),
    (1, 2, 4, 2, (1, 2)),
    (1, None, 4, 2, (1, 2)),
    (2, None, 4, 2, (2, 1)),
    (4, None, 2, 8, (2, 4)),    # no more workers than fields
    (4, 2, 8, 2, (2, 1)),       # clamped to the cores
    (3, 4, 8, 16, (3, 4)),
])
def test_plan_workers(jobs, threads, n_fields, cores, expected, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    from celestecli._kernels.openmp_info import openmp_enabled

    if not openmp_enabled():
        expected = (expected[0], 1)
    assert plan_workers(jobs, threads, n_fields, cores) == expected
