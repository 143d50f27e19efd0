"""The scripts under scripts/ and the README's pipeline and cron examples, run for real.

The README blocks marked ``<!-- tested: tests/test_scripts.py -->`` are read from README.md and
run as written, with ``celeste`` on PATH meaning this checkout and the cron entry's paths moved
into a temporary directory.  The Slurm scripts are syntax-checked, their ``--dry-run`` output
is checked, and one is run end to end with ``srun`` standing in for by ``mpiexec``.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from field_runs import GOOD, ORCHESTRATION, REPO, catalog_of, cli_env, leftovers

from celestecli.catalog import read_catalog

SCRIPTS = REPO / "scripts"
MARKER = "<!-- tested: tests/test_scripts.py -->"


def readme_blocks() -> list[str]:
    """The code blocks that follow the test marker in README.md, in order."""
    blocks = re.findall(re.escape(MARKER) + r"\n```[a-z]*\n(.*?)```", (REPO / "README.md")
                        .read_text(), flags=re.S)
    assert len(blocks) == 2, "README.md should hold the pipeline and the cron examples"
    return blocks


@pytest.fixture
def celeste_bin(tmp_path) -> Path:
    """A bin directory whose ``celeste`` runs this checkout."""
    folder = tmp_path / "bin"
    folder.mkdir()
    shim = folder / "celeste"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m celestecli "$@"\n')
    shim.chmod(0o755)
    return folder


def run_script(name: str, *args, env: dict | None = None, timeout: float = 60):
    return subprocess.run(["bash", str(SCRIPTS / name), *map(str, args)], capture_output=True,
                          text=True, env=env or cli_env(), timeout=timeout,
                          stdin=subprocess.DEVNULL)


def field_list(path: Path, fields) -> Path:
    path.write_text("".join(f"{f}\n" for f in fields))
    return path


# --- the scripts ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["slurm-knl.sh", "slurm-cpu.sh", "cron-example.sh"])
def test_script_syntax(name):
    check = subprocess.run(["bash", "-n", str(SCRIPTS / name)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert os.access(SCRIPTS / name, os.X_OK)


def test_knl_script_dry_run(tmp_path):
    listing = field_list(tmp_path / "fields.txt", GOOD)
    run = run_script("slurm-knl.sh", "--dry-run", listing, tmp_path / "out", "--passes", "2",
                     env=cli_env(SLURM_JOB_NUM_NODES="2"))
    assert run.returncode == 0, run.stderr
    omp, srun = run.stdout.splitlines()
    assert omp == "OMP_NUM_THREADS=17 OMP_PLACES=cores OMP_PROC_BIND=spread"
    assert srun.split() == [
        "srun", "-n", "8", "-c", "68", "--cpu-bind=cores", "python3", "-m",
        "celestecli.parallel.mpi", "--threads", "17", "--fields", str(listing),
        "--out-dir", str(tmp_path / "out"), "--status-file", str(tmp_path / "out/status.jsonl"),
        "--passes", "2"]
    two = run_script("slurm-knl.sh", "--dry-run", listing, "out",
                     env=cli_env(RANKS_PER_NODE="2", SLURM_JOB_NUM_NODES="3"))
    assert "srun -n 6 -c 136 --cpu-bind=cores" in two.stdout and "--threads 34" in two.stdout
    # 68 cores do not split evenly in 8 or 3: whole cores per rank, 4 logical CPUs each
    eight = run_script("slurm-knl.sh", "--dry-run", listing, "out", env=cli_env(RANKS_PER_NODE="8"))
    assert "srun -n 8 -c 32 --cpu-bind=cores" in eight.stdout and "--threads 8" in eight.stdout
    three = run_script("slurm-knl.sh", "--dry-run", listing, "out", env=cli_env(RANKS_PER_NODE="3"))
    assert "srun -n 3 -c 88 --cpu-bind=cores" in three.stdout and "--threads 22" in three.stdout
    assert not (tmp_path / "out").exists()  # a dry run creates nothing


def test_cpu_script_dry_run(tmp_path):
    listing = field_list(tmp_path / "fields.txt", GOOD)
    smt = run_script("slurm-cpu.sh", "--dry-run", listing, "out",
                     env=cli_env(SLURM_JOB_NUM_NODES="3", CPUS_PER_NODE="256",
                                 HW_THREADS_PER_CORE="2"))
    assert smt.returncode == 0, smt.stderr
    assert smt.stdout.splitlines()[0].startswith("OMP_NUM_THREADS=32 OMP_PLACES=cores")
    assert "srun -n 12 -c 64 --cpu-bind=cores" in smt.stdout and "--threads 32" in smt.stdout
    slurm = run_script("slurm-cpu.sh", "--dry-run", listing, "out",
                       env=cli_env(SLURM_CPUS_ON_NODE="8", RANKS_PER_NODE="2"))
    assert "srun -n 2 -c 4 --cpu-bind=cores" in slurm.stdout and "--threads 4" in slurm.stdout
    # 128 cores in 3 ranks: 42 whole cores (84 logical CPUs) each
    uneven = run_script("slurm-cpu.sh", "--dry-run", listing, "out",
                        env=cli_env(CPUS_PER_NODE="256", HW_THREADS_PER_CORE="2",
                                    RANKS_PER_NODE="3"))
    assert "srun -n 3 -c 84 --cpu-bind=cores" in uneven.stdout and "--threads 42" in uneven.stdout


@pytest.mark.parametrize("name, setting", [
    ("slurm-knl.sh", {"RANKS_PER_NODE": "0"}), ("slurm-knl.sh", {"RANKS_PER_NODE": "100"}),
    ("slurm-knl.sh", {"RANKS_PER_NODE": "abc"}), ("slurm-cpu.sh", {"RANKS_PER_NODE": "abc"}),
    ("slurm-cpu.sh", {"RANKS_PER_NODE": "0"}), ("slurm-cpu.sh", {"HW_THREADS_PER_CORE": "0"}),
    ("slurm-cpu.sh", {"CPUS_PER_NODE": "8", "RANKS_PER_NODE": "16"}),
])
def test_slurm_scripts_refuse_impossible_splits(name, setting, tmp_path):
    listing = field_list(tmp_path / "fields.txt", GOOD)
    run = run_script(name, "--dry-run", listing, "out", env=cli_env(**setting))
    assert run.returncode == 2 and "srun" not in run.stdout
    assert "RANKS_PER_NODE" in run.stderr or "HW_THREADS_PER_CORE" in run.stderr \
        or "ranks per node need" in run.stderr, run.stderr


@pytest.mark.parametrize("name", ["slurm-knl.sh", "slurm-cpu.sh", "cron-example.sh"])
def test_scripts_refuse_missing_arguments(name, tmp_path):
    run = run_script(name, tmp_path / "fields.txt")
    assert run.returncode == 2
    assert "usage:" in run.stderr


@pytest.mark.parametrize("name", ["slurm-knl.sh", "slurm-cpu.sh"])
def test_slurm_scripts_refuse_an_unreadable_field_list(name, tmp_path):
    run = run_script(name, "--dry-run", tmp_path / "missing.txt", "out")
    assert run.returncode == 2
    assert "cannot read the field list" in run.stderr


@pytest.mark.mpi
def test_cpu_script_runs_the_mpi_job(sim_data, tmp_path):
    """slurm-cpu.sh end to end, with an ``srun`` that launches the step with mpiexec."""
    if shutil.which("mpiexec") is None or shutil.which("timeout") is None:
        pytest.skip("mpiexec not found: pip install '.[mpi]'")
    pytest.importorskip("mpi4py", reason="mpi4py not installed: pip install '.[mpi]'")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    srun = bin_dir / "srun"
    # srun -n N -c C: N tasks with C CPUs each; here the one task may use every CPU
    srun.write_text("#!/bin/bash\n# stands in for srun: -n N becomes mpiexec -n N\n"
                    "n=1\nwhile [[ $1 == -* ]]; do\n"
                    "  case $1 in -n) n=$2; shift 2;; -c) shift 2;; *) shift;; esac\ndone\n"
                    'exec timeout 120 mpiexec --oversubscribe --bind-to none -n "$n" "$@"\n')
    srun.chmod(0o755)
    # one rank with both CPUs: the cheapest job that goes through every step
    env = cli_env(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", PYTHON=sys.executable,
                  SLURM_JOB_NUM_NODES="1", RANKS_PER_NODE="1", CPUS_PER_NODE="2",
                  OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    out = tmp_path / "catalogs"
    listing = field_list(tmp_path / "fields.txt", GOOD[:1])
    run = run_script("slurm-cpu.sh", listing, out, "--data-dir", sim_data, *ORCHESTRATION,
                     env=env, timeout=150)
    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in (out / "status.jsonl").read_text().splitlines()]
    assert [(r["field"], r["status"]) for r in records] == [(str(GOOD[0]), "done")]
    assert "fields: 1, ranks: 1, threads per rank: 2" in run.stderr
    assert read_catalog(catalog_of(out, GOOD[0])).meta["provenance"].n_threads == 2


# --- the README's examples -----------------------------------------------------------------


def test_readme_pipeline_examples(sim_data, celeste_bin, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "sdss").symlink_to(sim_data)
    field_list(work / "fields.txt", GOOD[:2])
    env = cli_env(PATH=f"{celeste_bin}{os.pathsep}{os.environ['PATH']}")
    env.pop("CELESTE_DATA_DIR", None)
    run = subprocess.run(["bash", "-e", "-c", readme_blocks()[0]], cwd=work, env=env,
                         capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
    print(run.stderr)
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""
    catalogs = work / "catalogs"
    assert sorted(p.name for p in catalogs.iterdir()) == sorted(
        catalog_of(catalogs, f).name for f in GOOD[:2])
    assert (work / "failed.txt").read_text() == ""
    urls = (work / "urls.txt").read_text().split()
    assert len(urls) == 2 * 12 + 1  # per field 5 frames, 5 fpM, psField, photoObj; photoField
    assert all(u.startswith("https://") for u in urls)
    # the streamed catalog is the first field's catalog: the same likely stars
    table = read_catalog(catalog_of(catalogs, GOOD[0]))
    stars = table[table["is_star"] > 0.5]
    rows = [tuple(map(float, line.split())) for line in
            (work / "stars.txt").read_text().splitlines()]
    assert len(rows) == len(stars) > 0
    assert sorted(rows) == sorted(zip(stars["ra"].tolist(), stars["dec"].tolist(),
                                      strict=True))


def cron_command(block: str, root: Path, celeste_bin: Path) -> tuple[str, dict]:
    """The crontab entry's command and environment, its paths moved under ``root``."""
    def moved(text: str) -> str:
        return (text.replace("/opt/celeste/venv/bin", str(celeste_bin))
                .replace("/opt/celeste/scripts", str(SCRIPTS))
                .replace("/data/", f"{root}/"))

    env = cli_env()
    command = None
    for line in block.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if re.match(r"^[A-Z_]+=", line):
            name, value = line.split("=", 1)
            env[name] = moved(value)
        else:
            command = moved(line.split(maxsplit=5)[5])  # after minute hour day month weekday
    return command, env


def test_readme_cron_example(sim_data, celeste_bin, tmp_path):
    command, env = cron_command(readme_blocks()[1], tmp_path, celeste_bin)
    shutil.copytree(sim_data, tmp_path / "sdss", symlinks=True)
    field_list(tmp_path / "fields.txt", GOOD[:2])
    env["CELESTE_SAS_URL"] = "http://127.0.0.1:9"  # every file is present: no download
    catalogs = tmp_path / "catalogs"

    first = subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True,
                           timeout=240, stdin=subprocess.DEVNULL)
    log = (tmp_path / "celeste-cron.log").read_text()
    print(log)
    assert first.returncode == 0, log
    records = [json.loads(line) for line in (catalogs / "status.jsonl").read_text().splitlines()]
    assert sorted(r["field"] for r in records) == sorted(map(str, GOOD[:2]))
    assert {r["status"] for r in records} == {"done"}
    assert "ERROR" not in log and "WARNING" not in log
    before = {p.name: p.read_bytes() for p in catalogs.glob("celeste-*")}

    start = time.perf_counter()
    second = subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True,
                            timeout=240, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    print(f"second cron run: {elapsed:.1f} s")
    assert second.returncode == 0, (tmp_path / "celeste-cron.log").read_text()
    lines = (catalogs / "status.jsonl").read_text().splitlines()
    assert [json.loads(line)["status"] for line in lines[2:]] == ["skipped", "skipped"]
    assert {p.name: p.read_bytes() for p in catalogs.glob("celeste-*")} == before
    assert leftovers(catalogs) == []

    # a field whose files cannot be fetched fails alone; the others are still inferred
    field_list(tmp_path / "fields.txt", [*GOOD[:3], "9999/1/44"])
    third = subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True,
                           timeout=240, stdin=subprocess.DEVNULL)
    assert third.returncode == 3, (tmp_path / "celeste-cron.log").read_text()
    statuses = {r["field"]: r["status"] for r in map(json.loads, (
        catalogs / "status.jsonl").read_text().splitlines()[4:])}
    assert statuses == {**{str(f): "skipped" for f in GOOD[:2]}, str(GOOD[2]): "done",
                        "9999/1/44": "failed"}
