"""Inference on simulated fields: single sources, joint vs single VI, determinism, bad input."""

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import sim_fields
from sim_fields import crowd, source, write_sources

from celestecli._kernels.elbo import SourceEvaluator, expected_image, total_elbo
from celestecli._kernels.optimize import optimize_sources
from celestecli._kernels.transform import py_free_derivatives, py_to_free
from celestecli.angles import ra_offset_deg
from celestecli.catalog.io import read_catalog
from celestecli.catalog.schema import FLAG_BAD_SKY
from celestecli.fields import FieldID
from celestecli.infer.field import InferSettings, infer_field
from celestecli.infer.problem import build_problem
from celestecli.infer.settings import ELBO_TRUST_REGION
from celestecli.model.psf_fit import PsfGrid
from celestecli.sdss.image import load_field
from celestecli.sdss.photoobj import read_photoobj

FID = FieldID(9000, 1, 1)
R_BAND = 2


def field_problem(data_dir, fid=FID):
    return sim_fields.field_problem(data_dir, fid)


def optimize(problem, sources, settings=ELBO_TRUST_REGION, passes=1, rise=None):
    """Optimise ``sources`` in order, one pass each; returns (status, iterations, elbo).  The
    sources' rises of the ELBO are added to ``rise`` when given."""
    n = problem.n_sources
    status, iters, evals = (np.zeros(n, np.int64) for _ in range(3))
    elbo = np.full(n, np.nan)
    rise = np.zeros(n) if rise is None else rise
    comp_ptr = np.arange(len(sources) + 1, dtype=np.int64)
    for _ in range(passes):
        optimize_sources(problem.cy, np.array([0, len(sources)], np.int64), comp_ptr,
                         np.asarray(sources, np.int64), settings, 1, 1, status, iters, evals, elbo,
                         rise)
    return status, iters, elbo


@pytest.mark.parametrize("star", [True, False], ids=["star", "galaxy"])
def test_isolated_source_reaches_a_stationary_point_and_never_loses_elbo(tmp_path, star):
    write_sources(tmp_path, FID, [source(47.3, 48.6, star, 4.5, sigma_px=1.8)], seed=3)
    problem = field_problem(tmp_path)
    evaluator = SourceEvaluator(problem.cy, 0)
    start = evaluator.evaluate(problem.params[0], 0)[0]
    tight = dict(ELBO_TRUST_REGION, x_tol=0.0, f_tol=0.0, g_tol=1e-5, max_iter=200)
    status, iters, elbo = optimize(problem, [0], tight)
    assert status[0] == 0 and elbo[0] >= start
    value, g, h = evaluator.evaluate(problem.params[0], 2)
    assert value == pytest.approx(elbo[0], rel=1e-12)
    center = np.array([problem.entries.ra[0], problem.entries.dec[0]])  # position box centre
    g_free, _ = py_free_derivatives(py_to_free(problem.params[0], center), center, g, h)
    assert np.max(np.abs(g_free)) < 1e-5
    assert (problem.params[0, 26] > 0.5) == star  # P(star)


def test_default_convergence_never_lowers_the_elbo(tmp_path):
    write_sources(tmp_path, FID, [source(30, 40, True, 3.0), source(60, 55, False, 4.0)])
    problem = field_problem(tmp_path)
    for s in range(2):
        start = SourceEvaluator(problem.cy, s).evaluate(problem.params[s], 0)[0]
        status, _, elbo = optimize(problem, [s])
        assert status[s] == 0 and elbo[s] >= start


def test_joint_inference_beats_single_source_inference_on_overlapping_sources(tmp_path):
    blend = [source(44, 48, True, 4.0), source(49, 47, False, 4.3, sigma_px=2.5),
             source(53, 50, True, 3.6)]
    write_sources(tmp_path, FID, blend, seed=5)
    problem = field_problem(tmp_path)
    assert all(len(problem.neighbours[s]) == 2 for s in range(3))
    start = problem.params.copy()
    single = start.copy()
    for s in range(3):  # each alone, the others fixed at their initial values
        problem.params[:] = start
        optimize(problem, [s])
        single[s] = problem.params[s]
    problem.params[:] = single
    single_elbo = total_elbo(problem.cy, [0, 1, 2])
    problem.params[:] = start
    optimize(problem, [0, 1, 2], passes=3)
    joint_elbo = total_elbo(problem.cy, [0, 1, 2])
    assert joint_elbo > single_elbo


def test_each_pass_raises_the_field_elbo_by_the_sum_of_the_sources_rises(tmp_path):
    blend = [source(44, 48, True, 4.0), source(49, 47, False, 4.3, sigma_px=2.5),
             source(53, 50, True, 3.6)]
    write_sources(tmp_path, FID, blend, seed=5)
    problem = field_problem(tmp_path)
    rise = np.zeros(3)  # each call adds its rises to the last's
    for _ in range(3):
        before, risen = total_elbo(problem.cy, [0, 1, 2]), rise.copy()
        optimize(problem, [0, 1, 2], rise=rise)
        assert np.all(rise >= risen)
        # to the rounding of sums over ~1e4 pixels: 1e-12 of the ELBO (~4e4 nats)
        assert (rise - risen).sum() == pytest.approx(total_elbo(problem.cy, [0, 1, 2]) - before,
                                                     abs=1e-12 * abs(before))


def test_total_elbo_of_one_source_is_its_own_elbo(tmp_path):
    write_sources(tmp_path, FID, [source(44, 48, True, 4.0), source(50, 47, False, 4.3)])
    problem = field_problem(tmp_path)
    own = SourceEvaluator(problem.cy, 1).evaluate(problem.params[1], 0)[0]
    assert total_elbo(problem.cy, [1]) == pytest.approx(own, rel=1e-12)


def test_sources_on_either_side_of_ra_zero_keep_their_light(tmp_path):
    # A column of equal stars across the frame centre, which sits at RA = 0 (+y points east):
    # some lie at RA just below 360 while their patch centre lies just above 0.
    column = [source(48.0, y, True, 4.0) for y in 46.55 + 0.1 * np.arange(20)]
    write_sources(tmp_path, FID, column, centre_ra=0.0)
    problem = field_problem(tmp_path)
    source_ra = problem.params[:, 0]
    centre_ra = problem.patches.u0[:, R_BAND, 0]
    assert np.any((source_ra > 180.0) != (centre_ra > 180.0))
    jacobian = problem.patches.jac[:, R_BAND]
    np.testing.assert_allclose(jacobian, np.broadcast_to(jacobian[0], jacobian.shape),
                               rtol=1e-4, atol=1e-4 * np.abs(jacobian[0]).max())
    sky = expected_image(problem.cy, R_BAND, sources=[])
    light = np.array([(expected_image(problem.cy, R_BAND, sources=[s]) - sky).sum()
                      for s in range(problem.n_sources)])
    np.testing.assert_allclose(light, np.median(light), rtol=1e-3)


def test_inference_across_ra_zero_recovers_positions(tmp_path):
    stars = [source(20.0, 47.3, True, 4.0), source(48.0, 47.35, True, 4.0),
             source(76.0, 47.45, True, 4.0)]
    truth = write_sources(tmp_path, FID, stars, seed=4, centre_ra=0.0)
    problem = field_problem(tmp_path)
    assert np.all((problem.params[:, 0] > 180.0) != (problem.patches.u0[:, R_BAND, 0] > 180.0))
    table = infer_field(tmp_path, FID, InferSettings(threads=1)).table
    ra = np.asarray(table["ra"])
    assert np.all((ra >= 0.0) & (ra < 360.0))
    dec = np.radians(np.asarray(table["dec"]))
    east = ra_offset_deg(ra, truth.ra) * np.cos(dec)
    north = np.asarray(table["dec"]) - truth.dec
    assert np.max(np.hypot(east, north)) * 3600.0 / 0.396 < 0.1  # pixels


def test_per_source_results_do_not_depend_on_the_thread_count(tmp_path):
    write_sources(tmp_path, FID, crowd(), seed=2)
    one = infer_field(tmp_path, FID, InferSettings(threads=1, passes=2))
    two = infer_field(tmp_path, FID, InferSettings(threads=2, passes=2))
    for name in ("ra", "dec", "is_star", "flux_r", "elbo", "gal_radius_px"):
        np.testing.assert_array_equal(one.table[name], two.table[name])


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "celestecli", *args], capture_output=True,
                          text=True)


def test_cli_writes_a_catalog_with_provenance_and_streams_csv(tmp_path):
    write_sources(tmp_path, FID, crowd(6), width=112, seed=4)
    out = tmp_path / "out"
    done = run_cli("infer", str(FID), "--data-dir", str(tmp_path), "--out-dir", str(out),
                   "--passes", "1")
    assert done.returncode == 0, done.stderr
    assert "9000/1/1: 6 sources" in done.stderr
    catalog = read_catalog(out / "celeste-009000-1-0001.fits")
    assert len(catalog) == 6 and np.all(catalog["run"] == 9000)
    extra = catalog.meta["provenance"].extra  # the frame size merge measures edges with
    assert (extra["IMAGEW"], extra["IMAGEH"]) == (112, 96)
    from astropy.io import fits

    with fits.open(out / "celeste-009000-1-0001.fits") as hdul:
        assert "INPUTS" in hdul and len(hdul["INPUTS"].data) == 13
    streamed = run_cli("infer", str(FID), "--data-dir", str(tmp_path), "--passes", "1",
                       "-o", "-", "--format", "csv")
    assert streamed.returncode == 0
    header, *rows = streamed.stdout.strip().splitlines()
    assert header.startswith("objid,") and len(rows) == 6


def test_a_region_infers_only_the_sources_inside_it(tmp_path):
    truth = write_sources(tmp_path, FID, crowd(8), seed=4)
    x, _ = np.asarray([(s["x"], s["y"]) for s in crowd(8)]).T
    inside = x < 47.5  # the region below: columns 0-47, every row
    out = tmp_path / "region.fits"
    done = run_cli("infer", str(FID), "--data-dir", str(tmp_path), "--region", "0:48,0:96",
                   "--passes", "1", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert (f"{inside.sum()} of them inside the region 0:48,0:96; the {(~inside).sum()} around "
            "it stay fixed") in done.stderr
    assert sorted(read_catalog(out)["objid"]) == sorted(truth.objid[inside])
    # the rest of the frame as a second region: merge takes both, each source once
    rest = tmp_path / "rest.fits"
    done = run_cli("infer", str(FID), "--data-dir", str(tmp_path), "--region", "48:96,0:96",
                   "--passes", "1", "-o", str(rest))
    assert done.returncode == 0, done.stderr
    merged = run_cli("merge", str(out), str(rest), "-o", str(tmp_path / "field.fits"))
    assert merged.returncode == 0, merged.stderr
    assert sorted(read_catalog(tmp_path / "field.fits")["objid"]) == sorted(truth.objid)


def test_detections_of_disjoint_regions_never_share_an_objid(tmp_path):
    write_sources(tmp_path, FID, crowd(8), seed=4)
    parts = []
    for region in ("0:48,0:96", "48:96,0:96"):
        part = tmp_path / f"{region.split(',')[0].replace(':', '-')}.fits"
        done = run_cli("infer", str(FID), "--data-dir", str(tmp_path), "--region", region,
                       "--init", "detect", "--passes", "1", "-o", str(part))
        assert done.returncode == 0, done.stderr
        parts.append(read_catalog(part)["objid"])
    # numbered from Y0 X0 * 10^6 (each run numbers the detections around its box, its
    # neighbours too): from 0 for the first box, from 48 * 10^6 for the second
    assert np.all((parts[0] >= 0) & (parts[0] < 1_000_000))
    assert np.all((parts[1] >= 48_000_000) & (parts[1] < 49_000_000))
    assert len(set(parts[0]) | set(parts[1])) == len(parts[0]) + len(parts[1]) > 0


def test_streaming_to_a_reader_that_stops_early_ends_quietly(tmp_path):
    rng = np.random.default_rng(7)
    sources = [source(*rng.uniform(10, 290, 2), True, 3.0) for _ in range(90)]
    write_sources(tmp_path, FID, sources, width=300, height=300, seed=7)
    # 90 CSV rows are more than a pipe buffer holds, so the writer meets the closed pipe
    run = subprocess.Popen([sys.executable, "-m", "celestecli", "infer", str(FID), "--data-dir",
                            str(tmp_path), "--passes", "1", "-o", "-", "--format", "csv"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert run.stdout.readline().startswith("objid,")
    run.stdout.close()  # as `head -1` does
    stderr = run.stderr.read()
    assert run.wait(timeout=300) == 141  # 128 + SIGPIPE, as cat or grep report
    assert "Traceback" not in stderr and "FAILED" not in stderr and "error" not in stderr


def test_output_directory_that_is_a_file_is_an_error_naming_it(tmp_path):
    write_sources(tmp_path, FID, crowd(3), seed=6)
    not_a_dir = tmp_path / "catalogs"
    not_a_dir.write_text("a file, not a directory")
    result = run_cli("infer", str(FID), "--data-dir", str(tmp_path), "-o",
                     str(not_a_dir / "m.fits"))
    assert result.returncode == 1
    assert f"cannot write {not_a_dir}/m.fits" in result.stderr
    assert f"{not_a_dir} is not a directory" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_field_without_sources_gives_an_empty_catalog(tmp_path):
    write_sources(tmp_path, FID, [], seed=8)  # blank sky: detection finds nothing
    out = tmp_path / "out"
    result = run_cli("infer", str(FID), "--data-dir", str(tmp_path), "--out-dir", str(out))
    assert result.returncode == 0, result.stderr
    assert "no sources to infer" in result.stderr and "9000/1/1: 0 sources" in result.stderr
    catalog = read_catalog(out / "celeste-009000-1-0001.fits")
    assert len(catalog) == 0 and "flux_r_nmgy" in catalog.colnames


def test_catalog_sources_without_pixels_are_left_out(tmp_path):
    from astropy.io import fits
    from astropy.wcs import WCS

    write_sources(tmp_path, FID, [source(48, 48, True, 4.0)])
    # the photoObj also lists a copy of that source 40 pixels off the frame's edge, where no
    # data constrain it (celeste simulate lists only sources on the frame)
    field_dir = tmp_path / "9000" / "1" / "1"
    with fits.open(field_dir / "frame-r-009000-1-0001.fits.bz2") as frame:
        ra, dec = WCS(frame[0].header).all_pix2world(-40.0, 30.0, 0)
    photoobj = field_dir / "photoObj-009000-1-0001.fits"
    with fits.open(photoobj) as hdul:
        rows = np.concatenate([hdul[1].data, hdul[1].data]).view(fits.FITS_rec)
        rows["OBJID"][1], rows["RA"][1], rows["DEC"][1] = 1, ra, dec
        fits.HDUList([hdul[0], fits.BinTableHDU(rows, header=hdul[1].header)]).writeto(
            photoobj, overwrite=True)
    out = tmp_path / "out"
    result = run_cli("infer", str(FID), "--data-dir", str(tmp_path), "--out-dir", str(out),
                     "--init", "photo")
    assert result.returncode == 0, result.stderr
    assert "left out 1 initial sources with no unmasked pixel in any image" in result.stderr
    catalog = read_catalog(out / "celeste-009000-1-0001.fits")
    assert list(catalog["objid"]) == [0]


@pytest.fixture
def field(tmp_path):
    write_sources(tmp_path, FID, crowd(5), seed=6)
    return tmp_path / "9000" / "1" / "1"


def assert_failed_cleanly(result, out, *needles):
    assert result.returncode == 1, result.stderr
    for needle in needles:
        assert needle in result.stderr
    assert not out.exists()  # no catalog, no temporary file, not even the directory


def test_missing_band_is_an_error_naming_the_file(tmp_path, field):
    (field / "frame-g-009000-1-0001.fits.bz2").unlink()
    out = tmp_path / "out"
    result = run_cli("infer", str(FID), "--data-dir", str(tmp_path), "--out-dir", str(out))
    assert_failed_cleanly(result, out, "frame-g-009000-1-0001.fits", "missing")


def test_a_failed_run_removes_the_directories_it_made_and_only_those(tmp_path, field):
    (field / "frame-g-009000-1-0001.fits.bz2").unlink()
    made = tmp_path / "made"
    result = run_cli("infer", str(FID), "--data-dir", str(tmp_path), "-o",
                     str(made / "deeper" / "catalog.fits"))
    assert_failed_cleanly(result, made, "frame-g-009000-1-0001.fits")
    kept = tmp_path / "kept"
    kept.mkdir()
    result = run_cli("infer", str(FID), "--data-dir", str(tmp_path), "--out-dir", str(kept))
    assert result.returncode == 1 and kept.is_dir() and not any(kept.iterdir())


def test_all_nan_image_is_an_error_naming_the_file(tmp_path, field):
    from astropy.io import fits

    path = field / "frame-r-009000-1-0001.fits.bz2"
    with fits.open(path) as hdul:
        hdul[0].data[:] = np.nan
        hdul.writeto(path, overwrite=True)
    out = tmp_path / "out"
    result = run_cli("infer", str(FID), "--data-dir", str(tmp_path), "--out-dir", str(out))
    assert_failed_cleanly(result, out, "frame-r-009000-1-0001.fits", "no finite pixel")


def test_photo_init_with_an_empty_photoobj_is_an_error(tmp_path, field):
    from astropy.io import fits

    path = field / "photoObj-009000-1-0001.fits"
    with fits.open(path) as hdul:
        hdul[1].data = hdul[1].data[:0]
        hdul.writeto(path, overwrite=True)
    # checked before the images are read (on a full field that takes half a minute): a
    # missing frame is not reached
    (field / "frame-g-009000-1-0001.fits.bz2").unlink()
    out = tmp_path / "out"
    result = run_cli("infer", str(FID), "--data-dir", str(tmp_path), "--out-dir", str(out),
                     "--init", "photo")
    assert_failed_cleanly(result, out, "photoObj-009000-1-0001.fits", "--init detect")
    assert "frame-g" not in result.stderr


def test_region_outside_the_frame_is_a_usage_error(tmp_path, field):
    out = tmp_path / "out"
    result = run_cli("infer", str(FID), "--data-dir", str(tmp_path), "--out-dir", str(out),
                     "--region", "500:600,10:20")
    assert result.returncode == 2 and "outside" in result.stderr
    assert not out.exists()
    bad = run_cli("infer", str(FID), "--data-dir", str(tmp_path), "--region", "10-20")
    assert bad.returncode == 2 and "malformed region" in bad.stderr
    assert "celestecli infer [OPTIONS]" in bad.stderr  # the subcommand's usage, not the group's


def test_output_options_that_cannot_work_are_refused_before_any_work(tmp_path, field):
    a_directory = tmp_path / "catalogs"
    a_directory.mkdir()
    result = run_cli("infer", str(FID), "--data-dir", str(tmp_path), "-o", str(a_directory))
    assert result.returncode == 2 and "is a directory" in result.stderr
    demo = run_cli("infer", "--demo", "--out-dir", str(tmp_path / "demo"), "-o", "-")
    assert demo.returncode == 2 and "--demo writes a FITS catalog" in demo.stderr
    assert not (tmp_path / "demo").exists()


def test_patches_are_sized_by_the_sky_under_each_source(tmp_path):
    # two equal bright stars at (x, y) = (25, 70) and (80, 25); a local background ten times the
    # sky where x < 50 and y >= 50 (as --sky local finds in a cluster core) shrinks the first
    # one's patch, not the second's.  A copy of the second lies 30 px beyond the right edge (as
    # photoObj rows can): the sky is read at the nearest pixel, not past the array's end.
    write_sources(tmp_path, FID, [source(25, 70, True, 4.0), source(80, 25, True, 4.0)])
    images = load_field(tmp_path, FID)
    entries = read_photoobj(tmp_path / "9000/1/1/photoObj-009000-1-0001.fits").subset([0, 1, 1])
    ra, dec = images[R_BAND].wcs.all_pix2world([25.0, 80.0, 126.0], [70.0, 25.0, 25.0], 0)
    entries = replace(entries, ra=ra, dec=dec)
    # PSF fits (the slow part) done once for both; the copy shares the second's grid node
    grids = [PsfGrid(im.psf, im.electrons.shape) for im in images]

    def sizes():
        box = build_problem(images, entries, psf_grids=grids).patches.box[:, R_BAND]
        return box[:, 1::2] - box[:, ::2]  # (x1 - x0, y1 - y0)

    before = sizes()
    assert np.array_equal(before[0], before[1]) and np.all(before[0] > 0)
    assert before[2, 0] < 0  # off the frame: an empty box
    images[R_BAND].sky_nmgy[50:, :50] *= 10.0
    after = sizes()
    assert np.array_equal(after[1], before[1])
    assert np.all(after[0] < before[0])


def problem_with_a_skyless_source(data_dir):
    """Two isolated stars, the second with no valid sky under its r patch (its ELBO fails)."""
    write_sources(data_dir, FID, [source(20, 20, True, 4.0), source(75, 75, True, 4.0)])
    images = load_field(data_dir, FID)
    entries = read_photoobj(data_dir / "9000/1/1/photoObj-009000-1-0001.fits")
    x0, x1, y0, y1 = build_problem(images, entries).patches.box[1, R_BAND]
    images[R_BAND].sky_nmgy[y0:y1 + 1, x0:x1 + 1] = 0.0
    return build_problem(images, entries)


def test_a_source_that_fails_before_iterating_reports_no_iterations(tmp_path):
    # two isolated sources optimised in turn by one thread; the second has no valid sky
    problem = problem_with_a_skyless_source(tmp_path)
    status, iters, evals = (np.zeros(2, np.int64) for _ in range(3))
    elbo, rise = np.full(2, np.nan), np.zeros(2)
    optimize_sources(problem.cy, np.array([0, 1], np.int64), np.array([0, 2], np.int64),
                     np.array([0, 1], np.int64), ELBO_TRUST_REGION, 1, 1, status, iters,
                     evals, elbo, rise)
    assert status[0] == 0 and iters[0] > 0 and rise[0] > 0
    assert status[1] == 2 and iters[1] == 0 and evals[1] == 0 and rise[1] == 0


def test_a_start_below_the_flux_box_still_finds_the_flux(tmp_path):
    # a 20 nMgy star whose catalog says 0.05 nMgy: MODEL.md 5.4's floor (0.1) would start its
    # log r flux below its box, pinned to the bound (r = e^-1 nMgy) for good
    write_sources(tmp_path, FID, [source(47.3, 48.6, True, np.log(20.0))], seed=3)
    images = load_field(tmp_path, FID)
    entries = read_photoobj(tmp_path / "9000" / "1" / "1" / "photoObj-009000-1-0001.fits")
    faint = entries.star_flux.copy()
    faint[:, R_BAND] = 0.05
    problem = build_problem(images, replace(entries, star_flux=faint, gal_flux=faint))
    status, _, _ = optimize(problem, [0])
    assert status[0] == 0
    assert np.exp(problem.params[0, 6]) == pytest.approx(20.0, rel=0.1)  # star's r flux


def test_sky_mode_is_recorded_and_a_change_of_it_redoes_the_field(tmp_path):
    write_sources(tmp_path, FID, crowd(6), width=112, seed=4)
    out = tmp_path / "out"
    args = ("infer", str(FID), "--data-dir", str(tmp_path), "--out-dir", str(out), "--passes", "1")
    local = run_cli(*args, "--sky", "local")
    assert local.returncode == 0, local.stderr
    assert "local background added to the sky" in local.stderr
    path = out / "celeste-009000-1-0001.fits"
    assert read_catalog(path).meta["provenance"].extra["SKY"] == "local"
    default = run_cli(*args)
    assert default.returncode == 0 and "replacing it" in default.stderr
    assert read_catalog(path).meta["provenance"].extra["SKY"] == "sdss"


def test_half_a_field_brighter_than_its_sky_gets_a_hint_to_fit_the_background(tmp_path):
    from astropy.io import fits

    write_sources(tmp_path, FID, crowd(6), width=200, height=200, seed=4)
    out = tmp_path / "out"
    args = ("infer", str(FID), "--data-dir", str(tmp_path), "--out-dir", str(out), "--passes", "1",
            "--force")
    catalog = out / "celeste-009000-1-0001.fits"
    fitting = run_cli(*args)  # the frame's sky is the truth: one source, near a bright galaxy,
    assert fitting.returncode == 0, fitting.stderr  # is flagged, and no hint
    assert np.count_nonzero(read_catalog(catalog)["flags"] & FLAG_BAD_SKY) == 1
    assert "BAD_SKY" not in fitting.stderr
    frame_i = tmp_path / "9000" / "1" / "1" / "frame-i-009000-1-0001.fits.bz2"
    with fits.open(frame_i) as hdul:  # 0.5 nMgy/px the frame's sky does not claim, at the left
        hdul[0].data[:, :10] += 0.5  # edge: it raises the median pixel around half the sources
        hdul.writeto(frame_i, overwrite=True)
    brighter = run_cli(*args)
    assert brighter.returncode == 0, brighter.stderr
    assert np.count_nonzero(read_catalog(catalog)["flags"] & FLAG_BAD_SKY) == 3
    assert "3 of 6 sources flagged BAD_SKY" in brighter.stderr
    assert "--sky local" in brighter.stderr
