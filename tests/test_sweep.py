"""The joint sweep: fixed passes, and --passes auto sweeping until the sources settle."""

import logging
import subprocess
import sys

import numpy as np
import pytest
from sim_fields import crowd, field_problem, source, write_sources

from celestecli.catalog.io import read_catalog
from celestecli.fields import FieldID
from celestecli.infer import sweep as sweep_module
from celestecli.infer.field import InferSettings, infer_field
from celestecli.infer.settings import ELBO_TRUST_REGION
from celestecli.infer.sweep import MAX_AUTO_PASSES, SETTLED_RISE, sweep

FID = FieldID(9000, 1, 1)


def run(problem, passes):
    targets = np.arange(problem.n_sources, dtype=np.int64)
    return sweep(problem, targets, passes, 42, dict(ELBO_TRUST_REGION), 1)


@pytest.fixture(scope="module")
def crowd_problem(tmp_path_factory):
    """The crowd's problem (built once: its PSF fits are slow) and its initial parameters."""
    data_dir = tmp_path_factory.mktemp("crowd")
    write_sources(data_dir, FID, crowd(), seed=2)
    problem = field_problem(data_dir, FID)
    return problem, problem.params.copy()


def restarted(crowd_problem):
    """The crowd's problem back at its initial parameters (the kernels share ``params``)."""
    problem, start = crowd_problem
    problem.params[:] = start
    return problem


def test_auto_stops_at_the_first_pass_in_which_no_source_rises_by_half_a_nat(crowd_problem):
    auto = run(restarted(crowd_problem), "auto")
    auto_params = crowd_problem[0].params.copy()
    assert auto.unsettled == 0 and 2 < auto.passes < MAX_AUTO_PASSES
    # the same sweep, stopped one pass earlier, still had a source rising by more
    shorter = run(restarted(crowd_problem), auto.passes - 1)
    assert shorter.unsettled > 0
    fixed = run(restarted(crowd_problem), auto.passes)
    assert fixed.passes == auto.passes and fixed.unsettled == 0
    np.testing.assert_array_equal(crowd_problem[0].params, auto_params)
    np.testing.assert_array_equal(fixed.elbo, auto.elbo)
    # and one more pass moves no source by more than the tolerance either
    assert run(crowd_problem[0], 1).unsettled == 0


def test_auto_sweeps_on_while_a_source_rises_and_stops_at_the_cap(crowd_problem, monkeypatch):
    # a tighter tolerance keeps the crowd moving for more passes than the default's 3
    monkeypatch.setattr(sweep_module, "SETTLED_RISE", 1e-3)
    tight = run(restarted(crowd_problem), "auto")
    assert tight.unsettled == 0 and tight.passes > 4
    assert run(restarted(crowd_problem), tight.passes - 1).unsettled > 0
    # sources that never settle are swept MAX_AUTO_PASSES times, and counted as unsettled
    monkeypatch.setattr(sweep_module, "SETTLED_RISE", 0.0)
    monkeypatch.setattr(sweep_module, "MAX_AUTO_PASSES", 4)
    capped = run(restarted(crowd_problem), "auto")
    assert capped.passes == 4 and capped.unsettled > 0


def test_sources_without_neighbours_settle_in_one_pass(tmp_path):
    write_sources(tmp_path, FID, [source(25, 30, True, 4.0), source(70, 65, False, 4.2)])
    problem = field_problem(tmp_path, FID)
    assert not any(problem.neighbours)
    result = run(problem, "auto")
    assert result.passes == 1 and result.unsettled == 0
    assert np.all(result.status == 0) and np.all(np.isfinite(result.elbo))
    # fixed passes make all their passes, and later passes leave the settled sources alone
    once = result.iterations.copy()
    problem = field_problem(tmp_path, FID)
    thrice = run(problem, 3)
    assert thrice.passes == 3 and thrice.unsettled == 0
    np.testing.assert_array_equal(thrice.iterations, once)


def test_infer_says_when_sources_are_still_moving_and_auto_settles_them(tmp_path, caplog,
                                                                          monkeypatch):
    write_sources(tmp_path, FID, crowd(), seed=2)
    with caplog.at_level(logging.INFO, logger="celestecli.infer.field"):
        one = infer_field(tmp_path, FID, InferSettings(threads=1, passes=1))
    moving = [r.getMessage() for r in caplog.records if "still rose" in r.getMessage()]
    assert one.passes == 1 and len(moving) == 1
    assert f"by more than {SETTLED_RISE:g} nats in the last of 1 passes" in moving[0]
    assert "--passes auto sweeps until they settle" in moving[0]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="celestecli.infer.field"):
        auto = infer_field(tmp_path, FID, InferSettings(threads=1, passes="auto"))
    messages = [r.getMessage() for r in caplog.records]
    assert not any("still rose" in m for m in messages)
    assert f"{FID}: the sources settled in {auto.passes} passes" in messages
    # auto at its cap says that more passes would go on
    caplog.clear()
    monkeypatch.setattr(sweep_module, "MAX_AUTO_PASSES", 1)
    with caplog.at_level(logging.INFO, logger="celestecli.infer.field"):
        infer_field(tmp_path, FID, InferSettings(threads=1, passes="auto"))
    capped = [r.getMessage() for r in caplog.records if "still rose" in r.getMessage()]
    assert len(capped) == 1 and capped[0].endswith("; a --passes above 1 sweeps longer")
    assert np.sum(auto.table["elbo"]) > np.sum(one.table["elbo"])


def test_cli_records_the_passes_asked_for_and_made(tmp_path):
    write_sources(tmp_path, FID, crowd(), seed=2)
    out = tmp_path / "auto.fits"
    done = subprocess.run([sys.executable, "-m", "celestecli", "infer", str(FID), "--data-dir",
                           str(tmp_path), "--passes", "auto", "-o", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    extra = read_catalog(out).meta["provenance"].extra
    assert extra["PASSES"] == "auto" and 2 < extra["NPASSES"] < MAX_AUTO_PASSES
    assert f"{FID}: the sources settled in {extra['NPASSES']} passes" in done.stderr
    refused = subprocess.run([sys.executable, "-m", "celestecli", "infer", str(FID),
                              "--data-dir", str(tmp_path), "--passes", "some"],
                             capture_output=True, text=True)
    assert refused.returncode == 2
    assert "'some' is neither a number of passes nor 'auto'" in refused.stderr
