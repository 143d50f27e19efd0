"""Fields over MPI ranks: ``mpiexec -n 2 python -m celestecli.parallel.mpi`` as CI runs it.

Skipped when mpiexec or mpi4py is missing (``pip install '.[mpi]'`` installs both); CI installs
them, so there these tests run.  Open MPI refuses to run as root without the two
OMPI_ALLOW_RUN_AS_ROOT variables, which are set here; ``timeout`` bounds every job so that a
hang fails the test instead of eating the CI time.
"""

import importlib.util
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from field_runs import BAD, GOOD, ORCHESTRATION, assert_same_sources, catalog_of, cli_env, leftovers

pytestmark = pytest.mark.mpi

MPI_TIMEOUT = 150


def mpi_env() -> dict:
    return cli_env(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                   OMPI_MCA_rmaps_base_oversubscribe="1")


def mpi_argv(n: int, *args) -> list[str]:
    if shutil.which("mpiexec") is None:
        pytest.skip("mpiexec not found: pip install '.[mpi]' (or install Open MPI)")
    if importlib.util.find_spec("mpi4py") is None:
        pytest.skip("mpi4py not installed: pip install '.[mpi]'")
    return ["timeout", str(MPI_TIMEOUT), "mpiexec", "--oversubscribe", "-n", str(n),
            sys.executable, "-m", "celestecli.parallel.mpi", *map(str, args)]


def mpirun(n: int, *args) -> subprocess.CompletedProcess:
    return subprocess.run(mpi_argv(n, *args), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, env=mpi_env(), timeout=MPI_TIMEOUT + 30)


def test_mpi_gives_the_pool_catalogs_and_survives_a_corrupt_field(sim_data, pool_run,
                                                                  tmp_path):
    out, status = tmp_path / "catalogs", tmp_path / "status.jsonl"
    # the corrupt field second: rank 0 takes the first field, so another rank usually gets it
    fields = [GOOD[0], BAD, *GOOD[1:]]
    run = mpirun(2, "--data-dir", sim_data, "--out-dir", out, "--threads", "1",
                 *ORCHESTRATION, "--status-file", status, *fields)
    print(run.stderr)
    assert run.returncode == 3, run.stderr  # not 124: no hang
    assert "partial failure: 1 of 5 failed" in run.stderr and f"{BAD}: " in run.stderr
    records = [json.loads(line) for line in status.read_text().splitlines()]
    assert {r["field"]: r["status"] for r in records} == {
        **{str(f): "done" for f in GOOD}, str(BAD): "failed"}
    print({r["field"]: r["worker"] for r in records})
    assert {r["worker"] for r in records} == {"rank 0", "rank 1"}
    assert pool_run.run.returncode == 3
    for fid in GOOD:
        assert_same_sources(catalog_of(out, fid), catalog_of(pool_run.out, fid))
    assert leftovers(out) == []

    # the same skip rules as celeste infer: a rerun finds everything up to date
    listing = tmp_path / "fields.txt"
    listing.write_text("".join(f"{f}\n" for f in GOOD))
    rerun = mpirun(2, "--data-dir", sim_data, "--out-dir", out, *ORCHESTRATION,
                   "--status-file", "-", "--fields", listing)
    assert rerun.returncode == 0, rerun.stderr
    assert {json.loads(line)["status"] for line in rerun.stdout.splitlines()} == {"skipped"}


def test_a_bad_field_list_stops_every_rank(tmp_path: Path):
    listing = tmp_path / "fields.txt"
    listing.write_text("9999/1/1\nnot-a-field\n")
    run = mpirun(2, "--out-dir", tmp_path / "out", "--fields", listing)
    assert run.returncode == 2, run.stderr
    assert "malformed field token 'not-a-field'" in run.stderr
    assert run.stderr.count("celeste: error") == 1  # rank 0 reports it, the others just stop


def test_the_data_directory_comes_from_celeste_data_dir(tmp_path: Path):
    """The Slurm scripts give the data directory only as CELESTE_DATA_DIR."""
    data = tmp_path / "elsewhere"
    run = subprocess.run(mpi_argv(1, "9999/1/7", "--out-dir", tmp_path / "out"),
                         stdin=subprocess.DEVNULL, capture_output=True, text=True,
                         env={**mpi_env(), "CELESTE_DATA_DIR": str(data)},
                         timeout=MPI_TIMEOUT + 30)
    assert run.returncode == 1, run.stderr
    assert f"{data}/9999/1/7/psField-009999-1-0007.fit: missing" in run.stderr


def test_a_status_file_that_cannot_be_written_stops_every_rank(tmp_path: Path):
    (tmp_path / "afile").write_text("")
    run = mpirun(2, "--out-dir", tmp_path / "out", "--status-file",
                 tmp_path / "afile" / "status.jsonl", "9999/1/1")
    assert run.returncode == 1, run.stderr  # not 124: no rank left waiting
    assert "afile is not a directory" in run.stderr
    assert not (tmp_path / "out").exists()


def test_a_status_file_lost_mid_run_ends_the_job_instead_of_hanging(sim_data, tmp_path):
    status = tmp_path / "fresh" / "status.jsonl"  # its directory is made
    proc = subprocess.Popen(mpi_argv(2, "--data-dir", sim_data, "--out-dir", tmp_path / "out",
                                     "--threads", "1", *ORCHESTRATION, "--status-file", status,
                                     *GOOD),
                            env=mpi_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + MPI_TIMEOUT
    while not (status.is_file() and status.read_text()):  # the first field is reported
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    status.unlink()
    status.mkdir()  # the next status line cannot be written
    _, stderr = proc.communicate(timeout=MPI_TIMEOUT + 30)
    print(stderr)
    assert proc.returncode == 1, stderr  # not 124: the ranks were stopped
    assert "status.jsonl: Is a directory" in stderr


def test_ranks_that_share_their_cores_share_the_threads(tmp_path: Path):
    def unbound(*args):  # a launcher that binds no rank apart: each sees both cores
        argv = mpi_argv(2, "--data-dir", tmp_path, "--out-dir", tmp_path / "out", *args,
                        "9999/6/9")
        at = argv.index("mpiexec") + 1
        argv[at:at] = ["--bind-to", "none"]
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              env=mpi_env(), timeout=MPI_TIMEOUT + 30)

    default = unbound()
    assert "threads per rank: 1" in default.stderr, default.stderr
    asked = unbound("--threads", "2")
    assert "2 ranks share 2 cores" in asked.stderr and "threads per rank: 1" in asked.stderr
