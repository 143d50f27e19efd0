"""``celeste simulate``: SDSS-format files that the readers load, rendered with the model.

Most tests share one small simulated field (300 x 250 px, 200 sources from the prior) made
through the Python API and written to disk; the CLI runs in-process (CliRunner) for the option
and error paths, and once in a subprocess at full SDSS size (the issue's acceptance command).
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from click.testing import CliRunner
from shared_data import shared
from threadpoolctl import threadpool_limits

from celestecli._kernels.elbo import expected_image
from celestecli.catalog import Provenance, read_catalog, write_catalog
from celestecli.catalog.atomic import OutputError
from celestecli.fields import FieldID
from celestecli.infer.problem import build_problem
from celestecli.model import priors
from celestecli.model.psf_fit import PsfMixture
from celestecli.model.shape import half_light_scale, pixel_angle_rad, position_angle_deg
from celestecli.sdss.frame import calibrate, read_frame
from celestecli.sdss.image import load_field
from celestecli.sdss.photofield import read_photofield
from celestecli.sdss.photoobj import read_photoobj
from celestecli.sdss.psfield import read_psfield
from celestecli.simulate import writer
from celestecli.simulate.field_setup import (
    BUILTIN_DARK_VARIANCE,
    BUILTIN_GAIN,
    builtin_psf,
    builtin_setup,
    f32,
)
from celestecli.simulate.prior_draw import PRIOR_PROBABILITY_OF_STAR, draw_from_prior
from celestecli.simulate.render import evaluate, profile_components, render_band
from celestecli.simulate.simulation import draw_truth, noise_rng, simulate_field
from celestecli.simulate.truth import Truth

REPO = Path(__file__).resolve().parents[1]
FID = FieldID(9999, 1, 1)
W, H = 300, 250


def invoke(*args):
    from celestecli.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def files_under(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (hidden ones too) by relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A 300 x 250 field with 200 prior sources, simulated and written, then loaded back."""
    out = tmp_path_factory.mktemp("small")
    setup = builtin_setup(W, H)
    truth = draw_truth(setup, 200, seed=1)
    sim = simulate_field(FID, setup, truth, seed=1, n_threads=5)
    writer.write_field(sim, out, Provenance(date=""), n_threads=5)
    images = load_field(out, FID)
    return sim, images, out


# --- readers load the files; what they compute is what was simulated ----------------------------


def test_readers_load_the_field_and_get_back_the_simulated_electrons(small):
    sim, images, out = small
    assert [im.band_name for im in images] == list("ugriz")
    for b, im in enumerate(images):
        counts = sim.counts[b]
        assert im.shape == (H, W) and counts.dtype.kind == "i" and counts.min() >= 0
        # frames hold multiples of a quarter electron or less: the reader's electrons are the
        # counts to within 1/8 electron (plus float32 rounding), so rounding gives them back
        assert np.array_equal(np.rint(im.electrons), counts)
        assert np.max(np.abs(im.electrons - counts) - 1e-6 * counts) <= 0.125
        render = sim.renders[b]
        np.testing.assert_array_equal(im.iota, render.iota)
        np.testing.assert_allclose(im.sky_nmgy, render.sky, rtol=1e-7)  # float32 storage
        assert im.gain == pytest.approx(BUILTIN_GAIN[b], rel=1e-7)
        assert im.dark_variance == pytest.approx(BUILTIN_DARK_VARIANCE[b], rel=1e-7)
        assert not np.isnan(im.electrons).any()  # empty masks
        # the psField's reconstruction is the chosen PSF, anywhere on the frame
        chosen = f32(builtin_psf(b).stamp())
        for x, y in ((0.0, 0.0), (W - 1.0, 123.4)):
            np.testing.assert_array_equal(im.psf.stamp(x, y), chosen)
    # the sky looks like SDSS's: a few tens (u) to about a thousand (i) electrons per pixel
    sky_e = [float(np.median(im.sky_nmgy * im.iota)) for im in images]
    assert 20 < sky_e[0] < 60 and 500 < sky_e[2] < 900 and 800 < sky_e[3] < 1400


def test_rendered_source_light_equals_the_models_expected_image(small):
    """The renderer (numpy, from MODEL.md) against the ELBO kernel's E[G] at the truth.

    Built from the loaded images as the inference builds its problem, with the truth as the
    parameters (zeta = lambda = 0: the truth is a point).  The kernel linearises the WCS at
    each patch's centre; rendered at that linearised position the two agree to rounding,
    and at the exact WCS position (what the simulation uses) to 1e-6 of the source's peak:
    the linearised position is off by < 1e-6 px (measured about 2e-7 px) within 25 px of
    the patch centre, and the profile changes by at most about its peak per pixel.
    """
    sim, images, _ = small
    truth = sim.truth
    with threadpool_limits(limits=1, user_api="blas"):
        problem = build_problem(images, truth.entries(), params=truth.params(variance=0.0))
    patches = problem.patches
    worst_exact = worst_linear = worst_offset = 0.0
    compared = 0
    for n in range(len(images)):
        sky = expected_image(problem.cy, n, [])
        for s in range(len(truth)):
            x0, x1, y0, y1 = patches.box[s, n]
            if x1 < x0 or y1 < y0:
                continue
            kernel = (expected_image(problem.cy, n, [s]) - sky)[y0:y1 + 1, x0:x1 + 1]
            rendered = sim.renders[n].sources[s]
            rx0, _, ry0, _ = rendered.box
            mine = rendered.light[y0 - ry0:y1 - ry0 + 1, x0 - rx0:x1 - rx0 + 1]
            assert mine.shape == kernel.shape
            peak = rendered.light.max()
            worst_exact = max(worst_exact, np.abs(kernel - mine).max() / peak)
            # the same PSF mixture at the kernel's linearised position
            u = np.array([truth.ra[s], truth.dec[s]])
            mu = patches.jac[s, n] @ (u - patches.u0[s, n]) + patches.p0[s, n]
            worst_offset = max(worst_offset, np.hypot(*(mu - rendered.position)))
            np.testing.assert_array_equal(patches.psf[s, n], rendered.psf.rows())
            comp = profile_components(bool(truth.is_star[s]), truth.frac_dev[s],
                                      truth.axis_ratio[s], truth.angle_rad[s],
                                      truth.sigma_px[s], rendered.psf)
            linear = rendered.flux * evaluate(comp, np.arange(x0, x1 + 1)[None, :] - mu[0],
                                              np.arange(y0, y1 + 1)[:, None] - mu[1])
            worst_linear = max(worst_linear, np.abs(kernel - linear).max() / peak)
            compared += 1
    assert compared > 900
    assert worst_linear < 1e-12
    assert worst_offset < 1e-6
    assert worst_exact < 1e-6


def test_noise_is_poisson_in_electrons(small):
    sim, _, _ = small
    for b in range(5):
        rate = sim.renders[b].expected_electrons.ravel()
        counts = sim.counts[b].ravel().astype(np.float64)
        n = rate.size
        resid = counts - rate
        # mean: E[c - F] = 0, standard error sqrt(mean F / n)
        assert abs(resid.mean()) < 5 * np.sqrt(rate.mean() / n)
        # variance: E[(c - F)^2 / F] = 1, standard error about sqrt(2 / n)
        assert abs(np.mean(resid**2 / rate) - 1) < 5 * np.sqrt(2.0 / n + 1.0 / (n * rate.min()))
    # u band (about 35 electrons of sky): the third central moment is F, as for a Poisson
    # variable (a Gaussian of the same variance gives 0); standard error sqrt(15 F / n)
    rate = sim.renders[0].expected_electrons.ravel()
    third = np.mean((sim.counts[0].ravel() - rate) ** 3 / rate)
    assert abs(third - 1) < 5 * np.sqrt(15 * np.median(rate) / rate.size)


# --- the catalogs written beside the images -------------------------------------------------


def test_photoobj_reads_back_as_the_truth(small):
    sim, _, out = small
    truth = sim.truth
    entries = read_photoobj(out / "9999/1/1/photoObj-009999-1-0001.fits")
    assert len(entries) == len(truth)
    np.testing.assert_array_equal(entries.ra, truth.ra)
    np.testing.assert_array_equal(entries.is_star, truth.is_star)
    flux = truth.band_fluxes()
    np.testing.assert_allclose(entries.star_flux, flux, rtol=1e-7)  # float32 columns
    np.testing.assert_allclose(entries.gal_flux, flux, rtol=1e-7)
    gal = ~truth.is_star
    np.testing.assert_allclose(entries.frac_dev[gal], truth.frac_dev[gal], atol=1e-7)
    np.testing.assert_allclose(entries.axis_ratio[gal], truth.axis_ratio[gal], atol=1e-7)
    turn = np.mod(entries.angle_rad[gal] - truth.angle_rad[gal] + np.pi / 2, np.pi) - np.pi / 2
    assert np.abs(turn).max() < 1e-6
    dominant = np.where(truth.frac_dev[gal] > 0.5, half_light_scale(1.0), half_light_scale(0.0))
    np.testing.assert_allclose(entries.radius_px[gal], truth.sigma_px[gal] * dominant, rtol=1e-6)


def test_truth_file_has_the_schema_and_the_raw_truth(small):
    sim, _, out = small
    truth = sim.truth
    table = read_catalog(out / "9999/1/1/truth-009999-1-0001.fits")
    wcs = sim.setup.reference.wcs
    again = Truth.from_table(table, wcs, "truth")
    for name in ("ra", "dec", "is_star", "log_flux_r", "colors", "frac_dev", "axis_ratio",
                 "angle_rad", "sigma_px", "color_component", "objid"):
        np.testing.assert_array_equal(getattr(again, name), getattr(truth, name))
    np.testing.assert_allclose(table["flux_r_nmgy"], np.exp(truth.log_flux_r), rtol=1e-15)
    x, y = wcs.all_world2pix(truth.ra, truth.dec, 0)
    np.testing.assert_allclose(table["x"], x)
    gal = ~truth.is_star
    assert np.all(np.isnan(table["gal_angle_deg"][~gal]))
    np.testing.assert_allclose(table["gal_radius_px"][gal],
                               truth.sigma_px[gal] * half_light_scale(truth.frac_dev[gal]))
    assert table.meta["provenance"].date == ""
    # from the schema columns alone: sigma from the half-light radius, phi from the sky angle
    table.remove_columns([c for c in table.colnames if c.startswith("true_")])
    schema_only = Truth.from_table(table, wcs, "catalog")
    np.testing.assert_allclose(schema_only.sigma_px[gal], truth.sigma_px[gal], rtol=1e-12)
    turn = np.mod(schema_only.angle_rad[gal] - truth.angle_rad[gal] + np.pi / 2, np.pi)
    np.testing.assert_allclose(turn, np.pi / 2, atol=1e-9)
    np.testing.assert_allclose(schema_only.log_flux_r, truth.log_flux_r, atol=1e-12)
    np.testing.assert_allclose(schema_only.band_fluxes(), truth.band_fluxes(), rtol=1e-12)


# --- model pieces ---------------------------------------------------------------------------


def test_half_light_radius_holds_half_the_light():
    np.testing.assert_allclose(half_light_scale([1.0, 0.0]), [0.8492, 1.0616], atol=1e-4)
    # sample the light of an elongated galaxy (a point-like PSF) and count it inside the
    # ellipse whose semi-major axis is the half-light radius
    psf = PsfMixture(np.array([1.0]), np.zeros((1, 2)), np.array([np.eye(2) * 1e-8]))
    rho, phi, sigma = 0.6, 0.7, 3.0
    rng = np.random.default_rng(5)
    n = 1_000_000
    for frac in (0.0, 0.3, 1.0):
        comp = profile_components(False, frac, rho, phi, sigma, psf)
        assert comp.weights.sum() == pytest.approx(1.0)
        picks = rng.multinomial(n, comp.weights / comp.weights.sum())
        points = np.concatenate([rng.multivariate_normal(m, c, size=k)
                                 for k, m, c in zip(picks, comp.means, comp.covs, strict=True)])
        c, s = np.cos(phi), np.sin(phi)
        u = c * points[:, 0] + s * points[:, 1]
        v = (-s * points[:, 0] + c * points[:, 1]) / rho
        inside = np.mean(np.hypot(u, v) <= sigma * half_light_scale(frac))
        assert abs(inside - 0.5) < 5 * np.sqrt(0.25 / n)


def test_render_radius_reaches_the_threshold_density_of_the_brightest_component():
    from scipy.stats import multivariate_normal

    from celestecli.simulate.render import MIN_RADIUS, Components, render_radius

    # a bright round component off centre, and a faint one whose peak is below the threshold
    comp = Components(weights=np.array([0.9, 1e-12]), means=np.array([[1.5, 2.0], [50.0, 0.0]]),
                      covs=np.array([36.0 * np.eye(2), 4.0 * np.eye(2)]))
    flux, threshold = 1e6, 1e-3
    radius = render_radius(comp, flux, threshold)
    reach = radius - 2.5  # from the component's centre, 2.5 px from the source
    assert reach > MIN_RADIUS
    density = flux * 0.9 * multivariate_normal.pdf([reach, 0.0], mean=[0.0, 0.0], cov=comp.covs[0])
    assert density == pytest.approx(threshold, rel=1e-9)
    assert render_radius(comp, 1.0, threshold) == MIN_RADIUS


def test_position_angles_follow_the_wcs():
    setup = builtin_setup(200, 100, ra=150.0, dec=40.0, rotation_deg=20.0)
    wcs = setup.reference.wcs
    x, y = np.array([99.5, 10.0, 190.0]), np.array([49.5, 5.0, 90.0])  # centre, corners
    phi = np.array([0.3, 2.0, 3.0])
    pa = position_angle_deg(wcs, x, y, phi)
    # MODEL.md 0: PA = phi + PA(+x), PA(+x) = atan2(CD1_1, CD2_1) = the rotation, exactly at
    # the reference pixel; elsewhere north turns by dRA sin(Dec) (< 0.01 deg here)
    expected = np.mod(np.rad2deg(phi) + 20.0, 180.0)
    assert abs(pa[0] - expected[0]) < 1e-6
    np.testing.assert_allclose(pa[1:], expected[1:], atol=0.01)
    np.testing.assert_allclose(pixel_angle_rad(wcs, x, y, pa), phi, atol=1e-12)


def test_prior_draw_has_the_priors_moments():
    setup = builtin_setup(64, 48)
    n = 20000
    t = draw_from_prior(n, np.random.default_rng(7), setup.reference.wcs, (48, 64))
    star = t.is_star

    def near(sample, mean, sd):
        assert abs(np.mean(sample) - mean) < 5 * sd / np.sqrt(sample.size)

    near(star, PRIOR_PROBABILITY_OF_STAR, np.sqrt(0.28 * 0.72))
    for i, rows in enumerate((star, ~star)):
        sd = np.sqrt(priors.LOGFLUX_VAR[i])
        near(t.log_flux_r[rows], priors.LOGFLUX_MEAN[i], sd)
        near((t.log_flux_r[rows] - priors.LOGFLUX_MEAN[i]) ** 2, sd**2, sd**2 * np.sqrt(2))
        w, means, covs = priors.COLOR_WEIGHTS[i], priors.COLOR_MEANS[i], priors.COLOR_COVS[i]
        mix_mean = w @ means
        mix_var = w @ (np.diagonal(covs, axis1=1, axis2=2) + means**2) - mix_mean**2
        for j in range(4):
            near(t.colors[rows, j], mix_mean[j], np.sqrt(mix_var[j]))
        counts = np.bincount(t.color_component[rows], minlength=8) / rows.sum()
        assert np.all(np.abs(counts - w) < 5 * np.sqrt(w * (1 - w) / rows.sum()))
    near(t.frac_dev, 0.5, np.sqrt(1 / 8))  # Beta(0.5, 0.5)
    near(t.axis_ratio, 0.5, np.sqrt(1 / 20))  # Beta(2, 2)
    near(np.log(t.sigma_px), priors.RADIUS_MEAN, priors.RADIUS_SD)
    assert t.angle_rad.min() >= 0 and t.angle_rad.max() < np.pi
    x, y = setup.reference.wcs.all_world2pix(t.ra, t.dec, 0)
    assert x.min() >= 5 - 1e-6 and x.max() <= 63 - 5 + 1e-6
    assert y.min() >= 5 - 1e-6 and y.max() <= 47 - 5 + 1e-6


# --- the command ----------------------------------------------------------------------------


def test_same_seed_gives_identical_files_and_a_catalog_renders_the_same(tmp_path):
    args = ["simulate", "-n", 6, "--width", 100, "--height", 80]
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        result = invoke(*args, "--seed", seed, "-o", tmp_path / name)
        assert result.exit_code == 0, result.output
    a, b, c = (files_under(tmp_path / name) for name in "abc")
    assert len(a) == 14 and a == b
    assert a.keys() == c.keys()
    assert all(a[k] != c[k] for k in a if "frame-" in k or "truth-" in k or "photoObj" in k)
    # the truth file rendered again with the same seed gives the same pixels
    truth = tmp_path / "a/9999/1/1/truth-009999-1-0001.fits"
    result = invoke("simulate", "--catalog", truth, "--seed", 3, "--width", 100,
                    "--height", 80, "--field", "9999/1/2", "-o", tmp_path / "a")
    assert result.exit_code == 0, result.output
    for b in "ugriz":
        first = read_frame(tmp_path / f"a/9999/1/1/frame-{b}-009999-1-0001.fits.bz2")
        again = read_frame(tmp_path / f"a/9999/1/2/frame-{b}-009999-1-0002.fits.bz2")
        np.testing.assert_array_equal(first.image, again.image)
    # both fields now share the run/camcol's photoField, one row each
    photofield = tmp_path / "a/9999/1/photoField-009999-1.fits"
    for field in (1, 2):
        assert read_photofield(photofield, field).gain[2] == pytest.approx(4.6)


def test_sources_off_the_frame_are_rendered_but_not_listed(tmp_path):
    assert invoke("simulate", "-n", 12, "--seed", 5, "--width", 100, "--height", 80,
                  "-o", tmp_path / "wide").exit_code == 0
    truth = tmp_path / "wide/9999/1/1/truth-009999-1-0001.fits"
    result = invoke("simulate", "--catalog", truth, "--width", 50, "--height", 80,
                    "-o", tmp_path / "narrow")
    assert result.exit_code == 0, result.output
    wide = read_catalog(truth)
    inside = np.abs(wide["x"] - 49.5) < 25  # the narrow frame: the middle 50 columns
    assert 0 < inside.sum() < len(wide)
    assert f"{len(wide) - inside.sum()} of the {len(wide)} sources" in result.output
    listed = read_catalog(tmp_path / "narrow/9999/1/1/truth-009999-1-0001.fits")
    assert sorted(listed["objid"]) == sorted(wide["objid"][inside])
    with fits.open(tmp_path / "narrow/9999/1/1/photoObj-009999-1-0001.fits") as hdul:
        assert len(hdul[1].data) == inside.sum()


def test_full_size_field_from_the_command_line(tmp_path):
    """The acceptance command, as a user runs it."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    run = subprocess.run([sys.executable, "-m", "celestecli", "simulate", "--n-sources", "200",
                          "--seed", "1", "-o", str(tmp_path)], capture_output=True, text=True,
                         cwd=REPO, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    summary = [line for line in run.stderr.splitlines() if "simulate: 9999/1/1" in line]
    assert len(summary) == 1 and "200 sources" in summary[0] and "14 files" in summary[0]
    assert run.stdout == ""
    images = load_field(tmp_path, FID)
    assert [im.shape for im in images] == [(1489, 2048)] * 5
    truth = Truth.from_table(read_catalog(tmp_path / "9999/1/1/truth-009999-1-0001.fits"),
                             images[2].wcs, "truth")
    assert len(truth) == 200
    # the r band again in this process: the same counts, and residuals of Poisson size
    setup = builtin_setup()
    with threadpool_limits(limits=1, user_api="blas"):
        render = render_band(setup.bands[2], truth)
    counts = noise_rng(1, 2).poisson(render.expected_electrons)
    assert np.array_equal(np.rint(images[2].electrons), counts)
    z = (images[2].electrons - render.expected_electrons) / np.sqrt(render.expected_electrons)
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01


def test_like_copies_a_real_fields_wcs_psf_sky_and_gains(tmp_path):
    sdss = shared("sdss/2583/2/136").parents[2]
    real_fid = FieldID(2583, 2, 136)
    result = invoke("--data-dir", sdss, "simulate", "--like", real_fid, "-n", 5, "--seed", 2,
                    "--width", 120, "--height", 90, "-o", tmp_path)
    assert result.exit_code == 0, result.output
    sim = load_field(tmp_path, FID, bands="r")[0]
    real_path = sdss / "2583/2/136/frame-r-002583-2-0136.fits.bz2"
    real = read_frame(real_path)
    gain = read_photofield(sdss / "2583/2/photoField-002583-2.fits", 136).gain[2]
    assert sim.gain == gain
    np.testing.assert_array_equal(sim.calib, real.calib[:120])
    _, real_sky = calibrate(real, gain)
    np.testing.assert_array_equal(sim.sky_nmgy, real_sky[:90, :120])
    xs, ys = np.array([0.0, 60.5, 119.0, 2000.0]), np.array([0.0, 45.0, 89.0, 1400.0])
    np.testing.assert_array_equal(np.array(sim.wcs.all_pix2world(xs, ys, 0)),
                                  np.array(real.wcs.all_pix2world(xs, ys, 0)))
    real_psf = read_psfield(sdss / "2583/2/136/psField-002583-2-0136.fit").bands[2]
    for x, y in ((10.0, 20.0), (100.0, 80.0)):
        np.testing.assert_array_equal(sim.psf.stamp(x, y), real_psf.stamp(x, y))


# --- bad input ------------------------------------------------------------------------------


def assert_fails(result, code: int, *fragments: str):
    assert result.exit_code == code, result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


def test_unknown_like_field_is_an_error_naming_the_missing_file(tmp_path):
    out = tmp_path / "out"
    result = invoke("--data-dir", tmp_path / "sdss", "simulate", "--like", "1234/5/678",
                    "-o", out)
    assert_fails(result, 1, "psField-001234-5-0678.fit", "missing")
    assert not out.exists()


def test_catalog_problems_are_errors_naming_the_file(tmp_path):
    out = tmp_path / "out"
    table = Table({"ra": [0.5], "dec": [0.5], "is_star": [1.0], "color_ug": [1.0]})
    bad = tmp_path / "bad.ecsv"
    write_catalog(table, bad, provenance=Provenance(date=""))
    result = invoke("simulate", "--catalog", bad, "--width", 64, "--height", 64, "-o", out)
    assert_fails(result, 1, str(bad), "missing required columns", "flux_r_nmgy", "color_gr")

    table["flux_r_nmgy"] = [10.0]
    for c in ("gr", "ri", "iz"):
        table[f"color_{c}"] = [0.1]
    table["is_star"] = [0.0]  # a galaxy without shape columns
    write_catalog(table, bad, provenance=Provenance(date=""))
    result = invoke("simulate", "--catalog", bad, "--width", 64, "--height", 64, "-o", out)
    assert_fails(result, 1, str(bad), "gal_frac_dev")
    for name, value in (("gal_frac_dev", np.nan), ("gal_axis_ratio", 0.5),
                        ("gal_radius_px", 2.0), ("gal_angle_deg", 10.0)):
        table[name] = [value]
    write_catalog(table, bad, provenance=Provenance(date=""))
    result = invoke("simulate", "--catalog", bad, "--width", 64, "--height", 64, "-o", out)
    assert_fails(result, 1, str(bad), "row(s) 0", "galaxy shape")

    table["gal_frac_dev"] = [0.5]
    table["ra"] = [200.0]  # far from the built-in frame
    write_catalog(table, bad, provenance=Provenance(date=""))
    result = invoke("simulate", "--catalog", bad, "--width", 64, "--height", 64, "-o", out)
    assert_fails(result, 2, "none of the 1 sources", "--center")
    result = invoke("simulate", "--catalog", bad, "-n", 5, "-o", out)
    assert_fails(result, 2, "not both")
    result = invoke("simulate", "-n", 1, "--center", 10, 90, "-o", out)
    assert_fails(result, 2, "Dec 90 is not strictly between -90 and 90")
    assert not out.exists()


def test_centre_ra_is_taken_modulo_360(tmp_path):
    for name, ra in (("a", 400.0), ("b", 40.0)):
        assert invoke("simulate", "-n", 2, "--width", 32, "--height", 32, "--center", ra, 0.5,
                      "-o", tmp_path / name).exit_code == 0
    a, b = (files_under(tmp_path / name) for name in "ab")
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a if "frame-" in k)


def test_unwritable_output_is_an_error_and_leaves_nothing(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for out in (blocker, blocker / "sub"):
        result = invoke("simulate", "-n", 2, "--width", 32, "--height", 32, "-o", out)
        assert_fails(result, 1, "cannot write", "a-file")
    assert blocker.read_text() == "not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_existing_field_needs_force(tmp_path):
    args = ("simulate", "-n", 2, "--width", 32, "--height", 32, "-o", tmp_path)
    assert invoke(*args, "--seed", 1).exit_code == 0
    before = files_under(tmp_path)
    assert_fails(invoke(*args, "--seed", 2), 1, "exists", "--force")
    assert files_under(tmp_path) == before
    assert invoke(*args, "--seed", 2, "--force").exit_code == 0
    after = files_under(tmp_path)
    assert after.keys() == before.keys() and after != before


def test_force_never_replaces_files_simulate_did_not_write(tmp_path):
    args = ("simulate", "-n", 2, "--width", 32, "--height", 32, "-o", tmp_path)
    assert invoke(*args, "--seed", 1).exit_code == 0
    field_dir = tmp_path / "9999" / "1" / "1"
    real = next(field_dir.glob("psField-*.fit"))
    fits.PrimaryHDU().writeto(real, overwrite=True)  # stands in for a real SDSS psField
    before = files_under(tmp_path)
    result = invoke(*args, "--seed", 2, "--force")
    assert_fails(result, 1, real.name, "not written by celeste simulate")
    assert files_under(tmp_path) == before


def test_a_failure_while_writing_leaves_nothing(tmp_path, monkeypatch):
    setup = builtin_setup(32, 32)
    sim = simulate_field(FID, setup, draw_truth(setup, 2, seed=1), seed=1)

    def disk_full(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer, "write_catalog", disk_full)
    with pytest.raises(OutputError, match="No space left"):
        writer.write_field(sim, tmp_path / "out", Provenance(date=""))
    assert list(tmp_path.iterdir()) == []
