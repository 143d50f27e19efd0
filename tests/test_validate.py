"""``celeste validate``: Celeste's metrics reproduced on its own tables; readers; detection."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from click.testing import CliRunner

from celestecli.catalog import empty_catalog, write_catalog
from celestecli.errors import InputFileError, UsageError
from celestecli.validate.hubble import read_hubble_truth, score_detection
from celestecli.validate.matching import (
    match_to_truth,
    nearest_on_sky,
    one_to_one,
    separation_px,
)
from celestecli.validate.metrics import (
    good_rows,
    row_errors,
    score,
    star_galaxy_auc,
    uncertainty,
    z_scores,
)
from celestecli.validate.readers import Scorable, detect_kind, read_scorable
from celestecli.validate.scoring import NoMatchError, validate

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
S82 = "celeste_results/s82"
M2_FRAME = "sdss/2583/2/136/frame-r-002583-2-0136.fits.bz2"


def shared(rel: str) -> Path:
    path = SHARED / rel
    if not path.exists():
        pytest.skip(f"../shared/data not found: {path}")
    return path


def celeste(*args, check=True):
    """Run the real CLI in a subprocess, as a user would."""
    proc = subprocess.run([sys.executable, "-m", "celestecli", *map(str, args)],
                          capture_output=True, text=True, cwd=REPO,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stderr}")
    return proc


def invoke(*args):
    """Run the CLI in this process (quicker than a subprocess); stdout and stderr apart."""
    from celestecli.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def rel_close(ours, theirs, rtol=1e-9):
    return abs(ours - theirs) <= rtol * abs(theirs)


# --- the acceptance check: Celeste.jl's own score tables ----------------------------------


@pytest.fixture(scope="module")
def s82_report():
    truth = shared(f"{S82}/matched_truth.csv")
    proc = celeste("validate", shared(f"{S82}/matched_vb.csv"), "--compare",
                   shared(f"{S82}/matched_mc.csv"), "--truth", truth, "--matched", "--json")
    return json.loads(proc.stdout)


def test_reproduces_every_row_of_scoredf(s82_report):
    expected = Table.read(shared(f"{S82}/scoredf.csv"), format="ascii.csv")
    ours = {s["metric"]: s for s in s82_report["scores"]}
    assert [s["metric"] for s in s82_report["scores"]] == list(expected["field"])
    for row in expected:
        s = ours[row["field"]]
        assert s["n"] == row["N"], row["field"]
        first = s["catalogs"]["matched_vb"]["mean"]
        second = s["catalogs"]["matched_mc"]["mean"]
        d = s["diffs"]["matched_mc"]
        for name, value, ref in (("first", first, row["first"]), ("second", second,
                                 row["second"]), ("diff", d["diff"], row["diff"]),
                                 ("diff_sd", d["diff_sd"], row["diff_sd"])):
            assert rel_close(value, ref), (row["field"], name, value, ref)


@pytest.mark.parametrize("which", ["vb", "mc"])
def test_reproduces_uncertainty_tables(s82_report, which):
    expected = Table.read(shared(f"{S82}/uscore_{which}.csv"), format="ascii.csv")
    ours = {u["field"]: u for u in s82_report["uncertainty"][f"matched_{which}"]}
    for row in expected:
        u = ours[row["field"]]
        for k, col in ((0.5, "within_half_sd"), (1, "within_1_sd"), (2, "within_2_sd"),
                       (3, "within_3_sd")):
            assert rel_close(u[f"within_{k:g}_sd"], row[col]), (row["field"], col)


def test_star_galaxy_auc_matches_published_values(s82_report):
    # VALIDATION.md 2: VI 0.985, MCMC 0.991; pstardf.csv holds the same probabilities
    auc = s82_report["star_galaxy_auc"]
    assert round(auc["matched_vb"], 3) == 0.985
    assert round(auc["matched_mc"], 3) == 0.991
    pstar = Table.read(shared(f"{S82}/pstardf.csv"), format="ascii.csv")
    truth = np.asarray(pstar["true_star"]) == "true"
    assert star_galaxy_auc(truth, pstar["pstar_vb"]) == auc["matched_vb"]


def test_photo_scored_with_both_celeste_catalogs_gives_published_numbers():
    truth = read_scorable(shared(f"{S82}/matched_truth.csv"))
    cats = [read_scorable(shared(f"{S82}/matched_{w}.csv")) for w in ("photo", "vb", "mc")]
    result = validate(truth, cats, matched=True, n_boot=0)
    photo = {s.metric: s.means[0] for s in result.scores}
    # VALIDATION.md 2 gives 0.271, 0.181, 1.021 / 0.329 / 0.204 / 0.379: these are the
    # four-digit means rounded again half up (0.1805 -> 0.181), as the four digits show
    published = {"position": (0.2712, 0.271), "flux_r_mag": (0.1805, 0.181),
                 "color_ug": (1.0205, 1.021), "color_gr": (0.3290, 0.329),
                 "color_ri": (0.2035, 0.204), "color_iz": (0.3785, 0.379)}
    for metric, (four, three) in published.items():
        assert round(photo[metric], 4) == pytest.approx(four, abs=1e-12), metric
        assert abs(photo[metric] - three) <= 0.0006, metric
    assert {s.metric: s.n for s in result.scores}["color_ug"] == 298


def test_rows_whose_truth_type_or_shape_is_blank_are_not_scored(tmp_path):
    truth = Table.read(shared(f"{S82}/matched_truth.csv"), format="ascii.csv")
    types = np.where(np.asarray(truth["is_star"]) == "true", "1", "0").astype(object)
    types[::10] = ""  # every tenth truth type unknown
    truth["is_star"] = types
    truth.write(tmp_path / "truth.csv")
    vb = Table.read(shared(f"{S82}/matched_vb.csv"), format="ascii.csv")
    for name in ("gal_frac_dev", "gal_axis_ratio", "gal_radius_px", "gal_angle_deg"):
        vb[name] = np.full(len(vb), "", dtype=object)  # no shapes at all
    vb.write(tmp_path / "vb.csv")
    result = validate(read_scorable(tmp_path / "truth.csv"), [read_scorable(tmp_path / "vb.csv")],
                      matched=True, n_boot=0)
    n = {s.metric: s.n for s in result.scores}
    known = np.ones(len(types), bool)
    known[::10] = False
    assert n["missed_stars"] == np.sum(known & (types == "1"))
    assert n["missed_galaxies"] == np.sum(known & (types == "0"))
    assert "gal_axis_ratio" not in n and "gal_angle_deg" not in n


def test_sky_matching_pairs_the_matched_tables_row_by_row():
    truth = read_scorable(shared(f"{S82}/matched_truth.csv"))
    vb = read_scorable(shared(f"{S82}/matched_vb.csv"))
    idx, sep = nearest_on_sky(truth.table["ra"], truth.table["dec"], vb.table["ra"],
                              vb.table["dec"])
    assert np.array_equal(idx, np.arange(len(truth)))
    assert np.all(sep < 0.396)
    by_sky = validate(truth, [vb], n_boot=0)
    by_row = validate(truth, [read_scorable(shared(f"{S82}/matched_vb.csv"))], matched=True,
                      n_boot=0)
    assert [(s.metric, s.n, s.means) for s in by_sky.scores] == \
        [(s.metric, s.n, s.means) for s in by_row.scores]


# --- readers ----------------------------------------------------------------------------


def test_coadd_truth_after_celestes_cuts():
    path = shared("truth/coadd_for_4263_5_119.fit")
    assert detect_kind(path) == "coadd"
    truth = read_scorable(path)
    stars = truth.table["is_star"] == 1
    assert (len(truth), int(stars.sum()), int((~stars).sum())) == (799, 184, 615)
    assert truth.cuts == {"saturated": 36, "hand-listed bad objid": 4}
    assert np.all(np.isnan(truth.table["gal_radius_px"][stars]))


def test_coadd_truth_as_casjobs_csv_is_recognised(tmp_path):
    fits_path = shared("truth/coadd_for_4263_5_119.fit")
    csv_path = tmp_path / "coadd.csv"
    csv_path.write_text("#Table1\n")  # CasJobs may start with a table name line
    coadd = Table.read(fits_path)
    probpsf = np.asarray(coadd["probpsf"], dtype=object)
    probpsf[:20] = ""  # the first 20 truth types unknown
    coadd["probpsf"] = probpsf
    with open(csv_path, "a") as fh:
        coadd.write(fh, format="ascii.csv")
    assert detect_kind(csv_path) == "coadd"
    from_csv, from_fits = read_scorable(csv_path), read_scorable(fits_path)
    assert from_csv.cuts == from_fits.cuts
    unknown = np.isin(from_csv.table["objid"], np.asarray(coadd["objid"][:20]))
    assert 0 < unknown.sum() <= 20
    for name in ("is_star", "flux_r_nmgy", "color_ug", "gal_radius_px"):
        assert np.all(np.isnan(from_csv.table[name][unknown])), name
    for name in ("ra", "dec", "is_star", "flux_r_nmgy", "color_ug", "gal_radius_px"):
        np.testing.assert_allclose(from_csv.table[name][~unknown],
                                   from_fits.table[name][~unknown], rtol=1e-6)


def test_coadd_conversion_reproduces_celestes_truth_rows():
    truth = read_scorable(shared("truth/coadd_for_4263_5_119.fit")).table
    ref = Table.read(shared(f"{S82}/matched_truth.csv"), format="ascii.csv")
    rows = {int(o): i for i, o in enumerate(truth["objid"])}
    # Celeste.jl's matched table predates the fourth hand-listed objid (a quasar)
    common = [i for i, o in enumerate(ref["objid"]) if int(o) in rows]
    assert len(common) == len(ref) - 1
    ours = truth[[rows[int(ref["objid"][i])] for i in common]]
    theirs = ref[common]
    for col in ("ra", "dec", "flux_r_nmgy", "color_ug", "color_gr", "color_ri", "color_iz",
                "gal_frac_dev", "gal_axis_ratio", "gal_radius_px", "gal_angle_deg"):
        a = np.asarray(ours[col], dtype=float)
        b = np.ma.filled(np.ma.asarray(theirs[col], dtype=float), np.nan)
        assert np.array_equal(np.isnan(a), np.isnan(b)), col
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13, err_msg=col)
    assert np.array_equal(ours["is_star"] == 1, np.asarray(theirs["is_star"]) == "true")


def test_photo_reader_applies_celestes_cuts():
    path = shared("sdss/3900/6/269/photoObj-003900-6-0269.fits")
    assert detect_kind(path) == "photo"
    photo = read_scorable(path)
    raw = fits.getdata(path, 1)
    kept = np.isin([int(o) for o in raw["OBJID"]], photo.table["objid"])
    assert kept.sum() == len(photo) and 0 < len(photo) < len(raw)
    assert np.all(np.isin(raw["OBJC_TYPE"][kept], (3, 6)))
    assert np.all(raw["NCHILD"][kept] == 0)
    assert np.all(raw["OBJC_FLAGS"][kept] & (1 + 2**18 + 2**24) == 0)
    assert np.all(raw["OBJC_FLAGS2"][kept] & (2**11 + 2**14 + 2**18) == 0)
    psf_r = raw["PSFFLUX"][kept, 2].astype(float)
    assert np.all(22.5 - 2.5 * np.log10(np.maximum(psf_r, 1e-3)) >= 15.99)
    assert sum(photo.cuts.values()) == len(raw) - len(photo)
    star = photo.table["is_star"] == 1
    np.testing.assert_array_equal(photo.table["flux_r_nmgy"][star],
                                  raw["PSFFLUX"][kept, 2][star].astype(float))


def test_empty_photoobj_gives_an_empty_catalog():
    photo = read_scorable(shared("sdss/2583/2/136/photoObj-002583-2-0136.fits"), "photo")
    assert len(photo) == 0


def test_catalog_missing_columns_is_named_by_the_cli(tmp_path):
    cat = tmp_path / "thin.csv"
    Table({"ra": [0.5], "dec": [0.5], "is_star": [1.0]}).write(cat)
    truth = shared("truth/coadd_for_4263_5_119.fit")
    proc = celeste("validate", cat, "--truth", truth, check=False)
    assert proc.returncode == 1
    assert f"{cat}: missing required columns: flux_r_nmgy, color_ug" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


# --- metrics on hand-made rows ----------------------------------------------------------


def _table(**cols):
    n = len(next(iter(cols.values())))
    base = {c: np.full(n, np.nan) for c in (
        "ra", "dec", "is_star", "flux_r_nmgy", "color_ug", "color_gr", "color_ri", "color_iz",
        "gal_frac_dev", "gal_axis_ratio", "gal_radius_px", "gal_angle_deg")}
    base.update({k: np.asarray(v, dtype=float) for k, v in cols.items()})
    return Table(base)


def test_row_errors_follow_the_definitions():
    one_px = 0.396 / 3600
    truth = _table(ra=[10, 10, 10], dec=[0, 0, 0], is_star=[1, 1, 0], flux_r_nmgy=[10, 1, -1],
                   color_ug=[1.0, np.nan, 0], gal_angle_deg=[5, 90, 0], gal_radius_px=[1, 2, 3])
    pred = _table(ra=[10, 10 + one_px, 10], dec=[0, 0, 2 * one_px], is_star=[0.2, 0.7, 0.5],
                  flux_r_nmgy=[10, 2, 1], color_ug=[1.5, 1, 0], gal_angle_deg=[175, 300, 0],
                  gal_radius_px=[1.5, 2, 3])
    err = row_errors(truth, pred)
    np.testing.assert_array_equal(err["missed_stars"], [1, 0, np.nan])
    np.testing.assert_array_equal(err["missed_galaxies"], [np.nan, np.nan, 1])
    np.testing.assert_allclose(err["position"], [0, 1, 2], atol=1e-9)
    b = 1.2e-10

    def asinh_mag(f):
        return -2.5 / np.log(10) * (np.arcsinh(f * 1e-9 / (2 * b)) + np.log(b))

    np.testing.assert_allclose(err["flux_r_mag"][:2],
                               [0, abs(asinh_mag(1) - asinh_mag(2))], atol=1e-12)
    assert np.isfinite(err["flux_r_mag"][2])  # asinh magnitudes exist for negative fluxes
    np.testing.assert_allclose(err["flux_r_nmgy"], [0, 1, 2])
    np.testing.assert_allclose(err["gal_angle_deg"], [10, 30, 0])  # circular, mod 180
    np.testing.assert_allclose(err["color_ug"][[0, 2]], [0.5 * 2.5 / np.log(10), 0])
    assert np.isnan(err["color_ug"][1])
    np.testing.assert_allclose(err["gal_radius_px"], [0.5, 0, 0])


def test_row_filters_on_truth_values():
    # rows: ok, radius > 20, fracdev in (0.05, 0.95), b/a > 0.6, star (no shape)
    truth = _table(gal_radius_px=[2, 25, 2, 2, np.nan], gal_frac_dev=[0, 1, 0.5, 0.97, np.nan],
                   gal_axis_ratio=[0.3, 0.3, 0.3, 0.8, np.nan], ra=[1] * 5, dec=[1] * 5,
                   gal_angle_deg=[10] * 4 + [np.nan], flux_r_nmgy=[1] * 5, is_star=[0] * 4 + [1])
    pred = _table(gal_radius_px=[3] * 5, gal_frac_dev=[0.5] * 5, gal_axis_ratio=[0.5] * 5,
                  ra=[1] * 5, dec=[1] * 5, gal_angle_deg=[20] * 5, flux_r_nmgy=[2] * 5,
                  is_star=[0] * 5)
    err = row_errors(truth, pred)
    assert list(good_rows(truth, err, "flux_r_mag")) == [True, False, True, True, True]
    assert list(good_rows(truth, err, "gal_radius_px")) == [True, False, False, True, False]
    assert list(good_rows(truth, err, "gal_angle_deg")) == [True, False, False, False, False]
    assert list(good_rows(truth, err, "missed_stars")) == [False, False, False, False, True]


def test_position_calibration_is_measured_on_the_sky_across_ra_zero():
    # 2e-4 deg of RA across 0/360 at Dec 60 is 0.36 arcsec on the sky: 1.5 SDs of 0.24 arcsec;
    # 2 arcsec in Dec is half an SD of 4.  Only the fields whose SD column a catalog has count.
    truth = Table({"ra": [359.9999, 10.0], "dec": [60.0, -30.0], "flux_r_nmgy": [1.0, 1.0]})
    pred = Table({"ra": [0.0001, 10.0], "dec": [60.0, -30.0 + 2.0 / 3600.0],
                  "flux_r_nmgy": [1.0, 1.0], "ra_err_arcsec": [0.24, 1.0],
                  "dec_err_arcsec": [1.0, 4.0]})
    z = z_scores(truth, pred)
    assert set(z) == {"ra", "dec"}
    np.testing.assert_allclose(z["ra"], [1.5, 0.0], atol=1e-6)
    np.testing.assert_allclose(z["dec"], [0.0, 0.5], atol=1e-9)
    rows = {row.field: row.within for row in uncertainty(truth, pred)}
    assert rows == {"ra": [0.5, 0.5, 1.0, 1.0], "dec": [1.0, 1.0, 1.0, 1.0]}


def test_paired_scores_and_bootstrap():
    rng = np.random.default_rng(1)
    n = 200
    truth = _table(ra=np.zeros(n), dec=np.zeros(n), is_star=np.zeros(n),
                   flux_r_nmgy=rng.lognormal(2, 1, n), gal_radius_px=np.ones(n))
    a = {"flux_r_nmgy": rng.uniform(0, 1, n)}
    b = {"flux_r_nmgy": rng.uniform(0, 2, n)}
    errs = [{m: np.full(n, np.nan) for m in ("missed_stars", "missed_galaxies", "position",
                                              "flux_r_mag", "gal_angle_deg", "gal_frac_dev",
                                              "gal_axis_ratio", "gal_radius_px", "color_ug",
                                              "color_gr", "color_ri", "color_iz")} | e
            for e in (a, b)]
    errs[1]["flux_r_nmgy"][:5] = np.nan  # dropped for both catalogs
    rows, skipped = score(truth, errs, n_boot=500, seed=3)
    assert [r.metric for r in rows] == ["flux_r_nmgy"] and "position" in skipped
    row = rows[0]
    x, y = a["flux_r_nmgy"][5:], b["flux_r_nmgy"][5:]
    assert row.n == n - 5
    assert row.means == [pytest.approx(x.mean()), pytest.approx(y.mean())]
    assert row.diffs[0] == pytest.approx((x - y).mean())
    assert row.diff_sds[0] == pytest.approx(np.std(np.abs(x - y), ddof=1) / np.sqrt(n - 5))
    for mean, (lo, hi), sample in zip(row.means, row.ci, (x, y), strict=True):
        se = sample.std() / np.sqrt(sample.size)
        assert lo < mean < hi and hi - lo == pytest.approx(2 * 1.96 * se, rel=0.2)
    again, _ = score(truth, errs, n_boot=500, seed=3)
    assert again[0].ci == row.ci
    none, _ = score(truth, errs, n_boot=0)
    assert np.isnan(none[0].ci[0][0])


def test_empty_match_is_reported_not_divided_by_zero(tmp_path):
    truth = Scorable("t", "truth.csv", "catalog", _table(ra=[10.0], dec=[0.0], is_star=[1]), 1)
    far = Scorable("c", "cat.csv", "catalog", _table(ra=[10.01], dec=[0.0], is_star=[1]), 1)
    with pytest.raises(NoMatchError, match="no truth row has a source within 0.396 arcsec"):
        validate(truth, [far])
    cat = tmp_path / "far.ecsv"
    t = empty_catalog(1)
    t["ra"], t["dec"], t["is_star"], t["flux_r_nmgy"] = 100.0, 50.0, 1.0, 3.0
    write_catalog(t, cat)
    result = invoke("validate", cat, "--truth", shared("truth/coadd_for_4263_5_119.fit"))
    assert result.exit_code == 1
    assert "no truth row has a source" in result.stderr


def test_matched_requires_equal_lengths():
    truth = Scorable("t", "t.csv", "catalog", _table(ra=[1.0, 2.0]), 2)
    cat = Scorable("c", "c.csv", "catalog", _table(ra=[1.0]), 1)
    with pytest.raises(UsageError, match="equal length"):
        validate(truth, [cat], matched=True)


def test_one_to_one_uses_each_source_once():
    truth = [[0.0, 0.0], [1.2, 0.0], [10.0, 10.0]]
    pred = [[0.6, 0.0], [1.3, 0.0], [50.0, 50.0]]
    t, p = one_to_one(truth, pred, radius=1.0)
    assert list(zip(t.tolist(), p.tolist(), strict=True)) == [(0, 0), (1, 1)]
    t, p = one_to_one(truth[:2], pred[:1], radius=1.0)
    assert len(t) == 1


def test_nearest_on_sky_reports_the_true_separation_and_the_tolerance_is_strict():
    # truth at Dec 60: RA offsets shrink by cos(Dec) = 1/2 on the sky
    truth_ra, truth_dec = np.array([30.0, 30.01, 30.02, 200.0]), np.full(4, 60.0)
    offsets_arcsec = np.array([0.3, 0.39, 0.41, 1.5])
    cat_ra = truth_ra + 2 * offsets_arcsec / 3600  # east, exactly `offsets` away to first order
    cat_dec = np.concatenate([truth_dec[:3], [60.0 + 1.5 / 3600]])
    cat_ra[3] = truth_ra[3]  # due north
    idx, sep = nearest_on_sky(truth_ra, truth_dec, cat_ra[::-1], cat_dec[::-1])
    assert list(idx) == [3, 2, 1, 0]
    np.testing.assert_allclose(sep, offsets_arcsec, rtol=1e-6)
    match = match_to_truth(truth_ra, truth_dec, [(cat_ra, cat_dec)])
    assert list(match.truth_rows) == [0, 1] and match.n_within == [2]
    match = match_to_truth(truth_ra, truth_dec, [(cat_ra, cat_dec)], tolerance_arcsec=2.0)
    assert list(match.truth_rows) == [0, 1, 2, 3]


def test_separation_in_pixels_is_accurate_at_tiny_and_large_angles():
    assert separation_px(0.0, 0.0, 0.0, 0.396 / 3600) == pytest.approx(1.0, rel=1e-12)
    assert separation_px(359.9999, 0.0, 0.0001, 0.0) == pytest.approx(0.0002 * 3600 / 0.396,
                                                                      rel=1e-9)
    assert separation_px(0.0, 89.0, 180.0, 89.0) == pytest.approx(2 * 3600 / 0.396, rel=1e-12)


# --- star-list truth (Hubble, M2) ---------------------------------------------------------


@pytest.fixture(scope="module")
def m2_truth():
    return read_hubble_truth(shared("truth/true_hubble_m2.npz"), shared(M2_FRAME))


def test_hubble_truth_lies_on_the_stars_of_the_frame(m2_truth):
    assert len(m2_truth) == 1114
    assert m2_truth.x_range == (310.0, 409.0) and m2_truth.y_range == (630.0, 729.0)
    image = fits.getdata(shared(M2_FRAME))
    offsets = []
    for i in np.argsort(m2_truth.mag_r)[:40]:  # brightest: centroid of a 5x5 box
        x, y = m2_truth.x[i], m2_truth.y[i]
        xi, yi = round(x), round(y)
        box = image[yi - 2:yi + 3, xi - 2:xi + 3]
        w = np.clip(box - np.median(image[yi - 6:yi + 7, xi - 6:xi + 7]), 0, None)
        gy, gx = np.mgrid[-2:3, -2:3]
        offsets.append(((w * gx).sum() / w.sum() + xi - x, (w * gy).sum() / w.sum() + yi - y))
    # centroids scatter (crowded field) but do not lean: a half-pixel convention slip or
    # swapped axes would shift them by 0.5 px or more
    assert np.all(np.abs(np.median(offsets, axis=0)) < 0.15)


def test_detection_scores_of_a_perturbed_star_list(tmp_path, m2_truth):
    rng = np.random.default_rng(5)
    bright = np.flatnonzero(m2_truth.mag_r < 20)
    # detect 80% of the bright stars that have no other truth star within 2.5 px, so that
    # every detection (moved by < 0.43 px) can only pair with its own star
    gap = np.hypot(m2_truth.x[:, None] - m2_truth.x, m2_truth.y[:, None] - m2_truth.y)
    np.fill_diagonal(gap, np.inf)
    isolated = bright[gap[bright].min(axis=1) > 2.5]
    found = isolated[rng.uniform(size=isolated.size) > 0.2]
    assert found.size >= 20
    x = m2_truth.x[found] + rng.uniform(-0.3, 0.3, found.size)
    y = m2_truth.y[found] + rng.uniform(-0.3, 0.3, found.size)
    # three false detections in the region, far (> 1 px) from every truth star
    spurious = []
    while len(spurious) < 3:
        cx, cy = rng.uniform(311, 408), rng.uniform(631, 728)
        if np.min(np.hypot(m2_truth.x - cx, m2_truth.y - cy)) > 1.5:
            spurious.append((cx, cy))
    x = np.concatenate([x, [s[0] for s in spurious], [100.0]])  # last one: outside the region
    y = np.concatenate([y, [s[1] for s in spurious], [100.0]])
    ra, dec = m2_truth.wcs.wcs_pix2world(x, y, 0)
    cat = empty_catalog(x.size)
    cat["ra"], cat["dec"] = ra, dec
    flux_e = 10 ** (-0.4 * (np.concatenate([m2_truth.mag_r[found], [19.5] * 4]) - 22.5))
    cat["flux_r_nmgy"] = flux_e
    det = score_detection(m2_truth, cat, radius_px=1.0)
    assert det.pred_x.size == x.size - 1
    assert det.overall.n_true == 1114 and det.overall.n_true_found == found.size
    assert det.overall.n_pred == found.size + 3 and det.overall.n_pred_real == found.size
    assert sum(b.n_true for b in det.bins) == 1114
    assert sum(b.n_true_found for b in det.bins) == found.size

    path = tmp_path / "m2.ecsv"
    write_catalog(cat, path)
    result = invoke("validate", path, "--truth", shared("truth/true_hubble_m2.npz"),
                    "--frame", shared(M2_FRAME), "--max-mag", 20, "--json")
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)["detection"][0]
    assert out["overall"]["n_true"] == bright.size
    assert out["overall"]["recall"] == pytest.approx(found.size / bright.size)
    assert out["overall"]["precision"] == pytest.approx(found.size / (found.size + 3))
    text = invoke("--data-dir", SHARED / "sdss", "validate", path, "--truth",
                  shared("truth/true_hubble_m2.npz")).stdout
    assert "recall" in text and "1114" in text
    other = "sdss/3900/6/269/frame-u-003900-6-0269.fits.bz2"  # another field's frame
    wrong = invoke("validate", path, "--truth", shared("truth/true_hubble_m2.npz"),
                   "--frame", shared(other))
    assert wrong.exit_code == 1
    assert "frame-u-003900-6-0269" in wrong.stderr and "not the r frame of field 2583/2/136" \
        in wrong.stderr


def test_star_list_truth_with_a_catalog_outside_its_region(tmp_path, m2_truth):
    """A catalog of another part of the field (e.g. --region 1848:2048,1289:1489) has no
    source in the Hubble region: an error naming it, not recall 0 with exit 0."""
    ra, dec = m2_truth.wcs.wcs_pix2world([1900.0, 1950.0], [1300.0, 1400.0], 0)
    cat = empty_catalog(2)
    cat["ra"], cat["dec"], cat["flux_r_nmgy"] = ra, dec, [10.0, 20.0]
    path = tmp_path / "corner.ecsv"
    write_catalog(cat, path)
    result = invoke("validate", path, "--truth", shared("truth/true_hubble_m2.npz"),
                    "--frame", shared(M2_FRAME))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "no source inside the star list's region x 310..409, y 630..729" in result.stderr
    assert f"{path}: 2 rows, none inside" in result.stderr


# --- plots -------------------------------------------------------------------------------


def test_plots_are_written(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "plots"
    result = invoke("validate", shared(f"{S82}/matched_vb.csv"), "--compare",
                    shared(f"{S82}/matched_photo.csv"), "--truth",
                    shared("truth/coadd_for_4263_5_119.fit"), "--bootstrap", 0, "--plots", out)
    assert result.exit_code == 0, result.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["calibration.png", "errors_vs_mag.png", "misses.png"]
    for p in out.iterdir():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_without_matplotlib_say_what_to_install(monkeypatch, tmp_path):
    from celestecli.validate import plots

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(UsageError, match="needs matplotlib"):
        plots.validation_plots(None, tmp_path)


def test_plots_without_matplotlib_fail_before_printing_a_report(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    result = invoke("validate", shared(f"{S82}/matched_vb.csv"), "--truth",
                    shared("truth/coadd_for_4263_5_119.fit"), "--plots", tmp_path / "plots")
    assert result.exit_code == 2 and "needs matplotlib" in result.stderr
    assert result.stdout == ""


def test_unreadable_truth_is_named(tmp_path):
    bad = tmp_path / "truth.fits"
    bad.write_bytes(b"SIMPLE  = not really a FITS file")
    with pytest.raises(InputFileError, match="truth.fits"):
        read_scorable(bad)


def test_our_fits_catalog_scored_against_coadd_truth(tmp_path):
    """A catalog written by our writer, offset by half a pixel, through the real sky match."""
    truth = read_scorable(shared("truth/coadd_for_4263_5_119.fit")).table
    keep = np.flatnonzero(np.isfinite(truth["flux_r_nmgy"]))[::2]
    cat = empty_catalog(keep.size)
    for col in ("ra", "is_star", "flux_r_nmgy", "color_ug", "color_gr", "color_ri", "color_iz",
                "gal_frac_dev", "gal_axis_ratio", "gal_radius_px", "gal_angle_deg"):
        cat[col] = truth[col][keep]
    cat["dec"] = truth["dec"][keep] + 0.5 * 0.396 / 3600
    cat["flux_r_nmgy"] *= 1.1
    path = tmp_path / "ours.fits"
    write_catalog(cat, path)
    result = invoke("validate", path, "--truth", shared("truth/coadd_for_4263_5_119.fit"),
                    "--json", "--bootstrap", 0)
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["matching"]["matched_rows"] >= keep.size  # neighbours may share a source
    scores = {s["metric"]: s["catalogs"]["ours"]["mean"] for s in out["scores"]}
    assert scores["missed_stars"] == 0 and scores["gal_axis_ratio"] < 0.05
    assert scores["position"] == pytest.approx(0.5, abs=0.05)
    exact = validate(read_scorable(shared("truth/coadd_for_4263_5_119.fit")),
                     [read_scorable(path)], n_boot=0)
    own = np.isin(exact.match.truth_rows, keep)  # rows matched to their own copy
    np.testing.assert_allclose(exact.errors[0]["position"][own], 0.5, rtol=1e-6)
    np.testing.assert_allclose(exact.errors[0]["flux_r_nmgy"][own],
                               0.1 * exact.matched_truth["flux_r_nmgy"][own], rtol=1e-12)
