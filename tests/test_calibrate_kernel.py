"""The frame -> electrons kernel against an independent numpy/scipy reference."""

from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from celestecli._kernels.calibrate import frame_to_electrons
from celestecli.sdss.frame import read_frame

SDSS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sdss"


def reference(image, calib, allsky, xinterp, yinterp, gain):
    """Bilinear sky via scipy (mode 'nearest' = constant extrapolation), then electrons."""
    gy, gx = np.meshgrid(yinterp, xinterp, indexing="ij")
    sky_dn = map_coordinates(allsky.astype(np.float64), [gy, gx], order=1, mode="nearest")
    sky = sky_dn * calib[None, :]
    return gain / calib[None, :] * (image + sky), sky


def run_kernel(image, calib, allsky, xinterp, yinterp, gain, n_threads):
    electrons = np.empty(image.shape, np.float32)
    sky = np.empty(image.shape, np.float32)
    frame_to_electrons(image, calib, allsky, xinterp, yinterp, gain, electrons, sky, n_threads)
    return electrons, sky


def random_case(rng, ny=37, nx=53, gy=7, gx=9):
    image = rng.normal(0.0, 2.0, (ny, nx)).astype(np.float32)
    image[rng.random((ny, nx)) < 0.05] = np.nan
    calib = rng.uniform(0.004, 0.006, nx)
    allsky = rng.uniform(50.0, 200.0, (gy, gx)).astype(np.float32)
    # Reach past both ends of the grid to exercise the clamping.
    xinterp = np.sort(rng.uniform(-2.0, gx + 1.0, nx))
    yinterp = rng.uniform(-2.0, gy + 1.0, ny)
    return image, calib, allsky, xinterp, yinterp, float(rng.uniform(1.5, 5.5))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_inputs_match_scipy_reference(seed):
    case = random_case(np.random.default_rng(seed))
    electrons, sky = run_kernel(*case, n_threads=2)
    want_e, want_sky = reference(*case)
    np.testing.assert_allclose(sky, want_sky, rtol=1e-6)
    np.testing.assert_array_equal(np.isnan(electrons), np.isnan(case[0]))
    np.testing.assert_allclose(electrons, want_e, rtol=1e-5, atol=1e-3, equal_nan=True)


def test_grid_points_give_grid_values_and_clamp_outside():
    allsky = np.arange(12, dtype=np.float32).reshape(3, 4) + 1.0
    xinterp = np.array([0.0, 1.0, 3.0, -5.0, 9.0, 1.25])
    yinterp = np.array([0.0, 2.0, -1.0, 7.0, 0.5])
    image = np.zeros((5, 6), np.float32)
    calib = np.ones(6)
    _, sky = run_kernel(image, calib, allsky, xinterp, yinterp, 1.0, 1)
    assert sky[0, 0] == 1.0 and sky[0, 1] == 2.0 and sky[1, 2] == 12.0
    assert sky[2, 3] == allsky[0, 0] and sky[3, 4] == allsky[2, 3]  # clamped corners
    assert sky[0, 5] == pytest.approx(2.25)  # standard weights: 0.75 * 2 + 0.25 * 3
    assert sky[4, 0] == pytest.approx(0.5 * 1 + 0.5 * 5)


def test_one_and_two_threads_identical():
    case = random_case(np.random.default_rng(5), ny=301, nx=257, gy=20, gx=17)
    one = run_kernel(*case, n_threads=1)
    two = run_kernel(*case, n_threads=2)
    for a, b in zip(one, two, strict=True):
        np.testing.assert_array_equal(a, b)


def test_shape_mismatch_is_refused():
    image, calib, allsky, xinterp, yinterp, gain = random_case(np.random.default_rng(3))
    with pytest.raises(ValueError, match="shapes"):
        run_kernel(image, calib[:-1], allsky, xinterp[:-1], yinterp, gain, 1)


@pytest.mark.parametrize("relpath", ["1000/1/100/frame-r-001000-1-0100.fits.bz2",
                                     "3900/6/269/frame-u-003900-6-0269.fits.bz2"])
def test_real_frame_matches_reference(relpath):
    path = SDSS / relpath
    if not path.is_file():
        pytest.skip(f"../shared/data not found: {path}")
    frame = read_frame(path)
    args = (frame.image, frame.calib, frame.allsky, frame.xinterp, frame.yinterp, 4.0)
    electrons, sky = run_kernel(*args, n_threads=2)
    want_e, want_sky = reference(*args)
    np.testing.assert_allclose(sky, want_sky, rtol=1e-6)
    np.testing.assert_allclose(electrons, want_e, rtol=1e-5, equal_nan=True)
    np.testing.assert_array_equal(electrons, run_kernel(*args, n_threads=1)[0])
