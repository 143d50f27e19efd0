"""Simulated fields and real ``celeste infer`` runs over them, shared by the scale-out tests.

Four small simulated fields (256 x 256 pixels, 15 sources) and a fifth whose r frame is
truncated.  Inference runs use ``--passes 1``: these tests are about orchestration.  The
session fixtures run the CLI once and are reused: each field inferred alone (the reference),
and a ``-j 2 --threads 1`` pool run over all five fields.
"""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from celestecli.catalog import read_catalog
from celestecli.cli import main
from celestecli.fields import FieldID
from celestecli.parallel.jobs import output_path

REPO = Path(__file__).resolve().parents[1]
GOOD = [FieldID(9999, 1, i) for i in range(1, 5)]
BAD = FieldID(9999, 1, 5)
BAD_FILE = f"{BAD.run}/{BAD.camcol}/{BAD.field}/frame-r-{BAD.stem}.fits.bz2"
ORCHESTRATION = ("--passes", "1")


def cli_env(**extra: str) -> dict:
    """The environment of a CLI subprocess: this checkout first on PYTHONPATH, no proxies."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def celeste_argv(*args) -> list[str]:
    return [sys.executable, "-m", "celestecli", *map(str, args)]


def celeste(*args, stdin: str | None = None, timeout: float = 180,
            **kwargs) -> subprocess.CompletedProcess:
    """Run ``python -m celestecli ARGS`` as a user would; returns the finished process."""
    return subprocess.run(celeste_argv(*args), input=stdin,
                          stdin=None if stdin is not None else subprocess.DEVNULL,
                          capture_output=True, text=True, env=cli_env(), timeout=timeout,
                          **kwargs)


def infer_args(data_dir: Path, out_dir: Path, *args) -> list:
    return ["infer", "--data-dir", data_dir, "--out-dir", out_dir, *ORCHESTRATION, *args]


def catalog_of(out_dir: Path, fid: FieldID) -> Path:
    return output_path(out_dir, fid, "fits")


def assert_same_sources(a: Path, b: Path) -> None:
    """Two catalogs hold the same sources with identical values in every column."""
    ta, tb = read_catalog(a), read_catalog(b)
    assert ta.colnames == tb.colnames
    ta.sort("objid")
    tb.sort("objid")
    assert len(ta) == len(tb) > 0
    for name in ta.colnames:
        x, y = np.asarray(ta[name]), np.asarray(tb[name])
        if x.dtype.kind == "f":
            assert np.array_equal(x, y, equal_nan=True), f"{a.name}: column {name} differs"
        else:
            assert np.array_equal(x, y), f"{a.name}: column {name} differs"


def leftovers(out_dir: Path) -> list[str]:
    """Temporary and lock files in an output directory (there should be none)."""
    return sorted(p.name for p in out_dir.iterdir() if p.name.endswith((".part", ".lock")))


@pytest.fixture(scope="session")
def sim_data(tmp_path_factory) -> Path:
    """A data dir with the GOOD fields and the BAD one (its r frame cut to 5000 bytes)."""
    data = tmp_path_factory.mktemp("fields") / "sdss"
    for seed, fid in enumerate([*GOOD, BAD], start=1):
        result = CliRunner().invoke(main, [
            "simulate", "--n-sources", "15", "--seed", str(seed), "--field", str(fid),
            "--width", "256", "--height", "256", "-o", str(data)])
        assert result.exit_code == 0, result.output
    bad = data / BAD_FILE
    with open(bad, "r+b") as fh:
        fh.truncate(5000)
    return data


@pytest.fixture(scope="session")
def single_catalogs(sim_data, tmp_path_factory) -> Path:
    """Each GOOD field inferred alone (``celeste infer FIELD --threads 1``), two at a time."""
    out = tmp_path_factory.mktemp("single")

    def alone(fid):
        return celeste(*infer_args(sim_data, out, "--threads", "1", fid))

    with ThreadPoolExecutor(2) as runner:
        for fid, run in zip(GOOD, runner.map(alone, GOOD), strict=True):
            assert run.returncode == 0, run.stderr
            assert catalog_of(out, fid).exists()
    return out


class PoolRun:
    """A finished ``celeste infer -j 2 --threads 1`` over GOOD + BAD."""

    def __init__(self, data: Path, out: Path, status: Path):
        self.out = out
        self.status = status
        self.run = celeste(*infer_args(data, out, "-j", "2", "--threads", "1",
                                       "--status-file", status, *GOOD, BAD))


@pytest.fixture(scope="session")
def pool_run(sim_data, tmp_path_factory) -> PoolRun:
    base = tmp_path_factory.mktemp("pool")
    return PoolRun(sim_data, base / "catalogs", base / "status.jsonl")
