"""SDSS readers on the real files in ../shared/data (read in place; copies only in tmp_path)."""

import bz2
import dataclasses
import gzip
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from shared_data import SDSS, shared

from celestecli.errors import InputFileError
from celestecli.fields import FieldID
from celestecli.sdss.fitsio import FitsFile
from celestecli.sdss.fpm import read_fpm_mask
from celestecli.sdss.frame import read_frame
from celestecli.sdss.image import is_sky_bad, load_field
from celestecli.sdss.layout import local_dir
from celestecli.sdss.photofield import read_photofield
from celestecli.sdss.photoobj import read_photoobj
from celestecli.sdss.psfield import read_psfield

M2 = FieldID(2583, 2, 136)
CUTOUT = FieldID(1000, 1, 100)
CLASSIC = FieldID(3900, 6, 269)


def link_field(tmp: Path, fid: FieldID, names: list[str]) -> Path:
    """A data dir in ``tmp`` holding symlinks to some of the shared files of ``fid``."""
    for name in names:
        rel = local_dir(Path(), fid, name.split("-")[0]) / name
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).symlink_to(shared(f"sdss/{rel}"))
    return tmp


@pytest.fixture(scope="module")
def m2_images():
    shared("sdss/2583/2/136/frame-r-002583-2-0136.fits.bz2")
    return load_field(SDSS, M2, n_threads=2)


@pytest.fixture(scope="module")
def m2_frames(m2_images):
    """The raw frames (masked pixels included), by band name."""
    with ThreadPoolExecutor(max_workers=2) as pool:  # bz2 decompression releases the GIL
        frames = pool.map(read_frame, [im.path for im in m2_images])
        return {im.band_name: frame for im, frame in zip(m2_images, frames, strict=True)}


# --- 2583/2/136: all five bands -------------------------------------------------------------

def test_m2_field_loads_all_bands(m2_images):
    assert [im.band for im in m2_images] == [0, 1, 2, 3, 4]
    gains = [im.gain for im in m2_images]
    dark = [im.dark_variance for im in m2_images]
    np.testing.assert_allclose(gains, [1.825, 3.855, 4.6, 5.195, 5.155], rtol=1e-6)
    np.testing.assert_allclose(dark, [12.6025, 1.44, 1.0, 6.25, 1.0], rtol=1e-6)
    for im in m2_images:
        assert im.electrons.shape == im.sky_nmgy.shape == (1489, 2048)
        assert im.electrons.dtype == im.sky_nmgy.dtype == np.float32
        finite = np.isfinite(im.electrons).mean()
        assert 0.985 < finite < 0.995, (im.band_name, finite)  # 0.6-1.2 % masked
        assert np.all(im.sky_nmgy > 0)
        np.testing.assert_allclose(im.iota, im.gain / im.calib)
        assert im.path.name == f"frame-{im.band_name}-002583-2-0136.fits.bz2"


def test_m2_electrons_by_hand(m2_images, m2_frames):
    """electrons = gain / calib[x] * (img + sky), sky bilinear in the coarse grid, by hand."""
    im = m2_images[2]
    frame = m2_frames["r"]
    img, calib, allsky = frame.image, frame.calib, frame.allsky.astype(np.float64)
    xi, yi = frame.xinterp, frame.yinterp
    assert allsky.shape == (192, 256) and xi[0] == -0.4375 and yi[-1] == 186.5625
    pixels = [(0, 0), (2047, 1488), (1000, 700), (5, 1200), (1800, 3), (640, 1111)]
    checked = 0
    for x, y in pixels:
        gx, gy = float(xi[x]), float(yi[y])
        gx, gy = min(max(gx, 0.0), allsky.shape[1] - 1), min(max(gy, 0.0), allsky.shape[0] - 1)
        x0, y0 = int(gx), int(gy)
        x1, y1 = min(x0 + 1, allsky.shape[1] - 1), min(y0 + 1, allsky.shape[0] - 1)
        tx, ty = gx - x0, gy - y0
        sky_dn = ((1 - ty) * ((1 - tx) * allsky[y0, x0] + tx * allsky[y0, x1])
                  + ty * ((1 - tx) * allsky[y1, x0] + tx * allsky[y1, x1]))
        sky = sky_dn * calib[x]
        assert im.sky_nmgy[y, x] == pytest.approx(sky, rel=1e-6)
        if np.isfinite(im.electrons[y, x]):
            checked += 1
            want = im.gain / calib[x] * (img[y, x] + sky)
            assert im.electrons[y, x] == pytest.approx(want, rel=1e-6)
    assert checked >= 4


def test_m2_masked_pixels_are_exactly_the_fpm_boxes(m2_images, m2_frames):
    for im in m2_images:
        mask = read_fpm_mask(SDSS / "2583/2/136" / f"fpM-002583-{im.band_name}2-0136.fit",
                             im.shape)
        raw = m2_frames[im.band_name].image
        np.testing.assert_array_equal(np.isnan(im.electrons), mask | np.isnan(raw))


@pytest.mark.parametrize("band", "ugriz")
def test_fpm_bad_columns_are_the_frames_interpolated_columns(m2_frames, band):
    """fpM and frame share columns: the frame's interpolated bad columns (smoothest across
    columns) are the fpM's full-height INTERP boxes, at zero column offset."""
    with fits.open(SDSS / "2583/2/136" / f"fpM-002583-{band}2-0136.fit") as h:
        boxes = h[1].data  # plane S_MASK_INTERP (value 0)
        assert h[11].data["attributeName"][0].strip() == "S_MASK_INTERP"
        tall = boxes[(boxes["rmax"] - boxes["rmin"] > 500) & (boxes["cmin"] == boxes["cmax"])]
    cols = np.unique(tall["cmin"])
    image = m2_frames[band].image.astype(np.float64)
    cols = cols[(cols > 3) & (cols < image.shape[1] - 4)]
    assert cols.size >= 5

    def roughness(dx):  # median |pixel - mean of its left and right neighbours|
        second_diff = image[:, cols + dx] - (image[:, cols + dx - 1] + image[:, cols + dx + 1]) / 2
        return np.median(np.nanmedian(np.abs(second_diff), axis=0))
    at_zero = roughness(0)
    assert all(at_zero < 0.75 * roughness(dx) for dx in (-2, -1, 1, 2))


@pytest.mark.parametrize("band", "griz")
def test_fpm_saturation_boxes_sit_on_bright_pixels_at_zero_row_offset(m2_frames, band):
    """fpM and frame share rows (both 1489): shifting the SATUR boxes along y lowers what they
    cover (the 128-row frame overlap would be the likely offset if there were one)."""
    image = m2_frames[band].image
    path = SDSS / "2583/2/136" / f"fpM-002583-{band}2-0136.fit"
    satur = read_fpm_mask(path, image.shape, planes=("S_MASK_SATUR",))
    assert satur.any()
    covered = {dy: np.nanmean(image[np.roll(satur, dy, axis=0)]) for dy in (0, 1, -1, 2, -2, 128)}
    assert covered[0] == max(covered.values())
    assert covered[0] > 100 * np.nanmedian(image)


def test_is_sky_bad(m2_images):
    """The globular cluster M2 fills the left of the field with unresolved light the sky grid
    does not follow (i band: claimed 1123 e-, box median 2805 e- at (60, 1100)); the far right
    corner is clean (1122 vs 1122)."""
    im = m2_images[3]
    assert is_sky_bad(im, 60.0, 1100.0)
    assert not is_sky_bad(im, 1990.0, 1430.0)
    no_sky = dataclasses.replace(im, sky_nmgy=np.zeros_like(im.sky_nmgy))
    assert is_sky_bad(no_sky, 1990.0, 1430.0)
    all_masked = dataclasses.replace(im, electrons=np.full_like(im.electrons, np.nan))
    assert not is_sky_bad(all_masked, 0.0, 0.0)


def test_m2_photoobj_is_empty():
    """Photo found no objects in M2: HDU 1 is an empty image, not a table."""
    path = shared("sdss/2583/2/136/photoObj-002583-2-0136.fits")
    cat = read_photoobj(path)
    assert len(cat) == 0
    assert cat.objid.dtype == np.int64 and cat.star_flux.shape == (0, 5)


# --- PSF ------------------------------------------------------------------------------------

def test_psf_matches_pydl_reference():
    """pydl's sdss_psf_recon(hdu3, xpos=600, ypos=500) -> psf[23:26, 25] (SOURCES.md 3)."""
    psf = read_psfield(shared("sdss/3366/3/110/psField-003366-3-0110.fit")).band("r")
    stamp = psf.stamp(600, 500)
    assert stamp.shape == (51, 51)
    np.testing.assert_allclose(stamp[23:26, 25], [0.02220068, 0.0738798, 0.11940149], atol=1e-7)
    assert np.unravel_index(stamp.argmax(), stamp.shape) == (25, 25)
    # The check is sensitive to the orientation: the swapped position is off by ~8e-4.
    assert np.abs(psf.stamp(500, 600)[23:26, 25] - stamp[23:26, 25]).max() > 1e-4


@pytest.mark.parametrize(("band", "x", "y"), [("r", 600, 500), ("i", 1024, 744)])
def test_psf_matches_idl_reconstruction(band, x, y):
    """IDL-written 25x25 trimmed PSFs of 2583/2/136; the r one is at (x, y) = (600, 500),
    the i-band model is constant (NROW_B = NCOL_B = 1) so any position reproduces it."""
    idl = fits.getdata(shared(f"derived/sdss-002583-2-0136-psf-{band}.fits")).astype(np.float64)
    psf = read_psfield(SDSS / "2583/2/136/psField-002583-2-0136.fit").band(band)
    # IDL wrote float32: one unit in the last place at the 0.14-0.16 peak is 1.5e-8.
    np.testing.assert_allclose(psf.stamp(x, y)[13:38, 13:38], idl, rtol=0, atol=1.5e-8)


def test_psfield_gain_equals_photofield_gain():
    for fid in (M2, CLASSIC):
        run, camcol, field = fid.run, fid.camcol, fid.field
        ps = read_psfield(shared(f"sdss/{run}/{camcol}/{field}/psField-{fid.stem}.fit"))
        pf = read_photofield(SDSS / f"{run}/{camcol}/photoField-{run:06d}-{camcol}.fits", field)
        np.testing.assert_array_equal(ps.calibration.gain, pf.gain)
        np.testing.assert_array_equal(ps.calibration.dark_variance, pf.dark_variance)


# --- 1000/1/100: 100x100 cut-out with the full frame's sky table --------------------------

def test_cutout_field_loads_with_psfield_gain():
    shared("sdss/1000/1/100/frame-r-001000-1-0100.fits.bz2")
    (im,) = load_field(SDSS, CUTOUT, bands="r", n_threads=1)
    assert im.shape == (100, 100) and im.iota.shape == (100,)
    assert im.gain == pytest.approx(4.71) and im.dark_variance == pytest.approx(1.8225)
    assert np.isfinite(im.electrons).mean() == pytest.approx(0.98)
    # Objects' WCS pixel positions agree with Photo's full-frame (COLC, ROWC) to < 1 px: the
    # cut-out keeps the frame's WCS and starts at frame pixel (0, 0).
    table = fits.getdata(SDSS / "1000/1/100/photoObj-001000-1-0100.fits", 1)
    x, y = im.wcs.all_world2pix(table["RA"], table["DEC"], 0)
    np.testing.assert_allclose(x, table["COLC"][:, 2], atol=1.0)
    np.testing.assert_allclose(y, table["ROWC"][:, 2], atol=1.0)


# --- 3900/6/269: u frame and the 981-object photoObj ---------------------------------------

def test_classic_u_frame_and_photofield():
    path = shared("sdss/3900/6/269/frame-u-003900-6-0269.fits.bz2")
    frame = read_frame(path)
    assert frame.shape == (1489, 2048)
    cal = read_photofield(SDSS / "3900/6/photoField-003900-6.fits", 269)
    np.testing.assert_allclose(cal.gain, [2.17, 4.035, 4.895, 4.76, 4.69], rtol=1e-6)
    np.testing.assert_allclose(cal.dark_variance, [7.0225, 1.8225, 0.9025, 5.0625, 1.21],
                               rtol=1e-6)
    table = fits.getdata(SDSS / "3900/6/269/photoObj-003900-6-0269.fits", 1)
    assert len(table) == 981
    x, y = frame.wcs.all_world2pix(table["RA"], table["DEC"], 0)
    assert np.all((x > -0.5) & (x < 2047.5) & (y > -0.5) & (y < 1488.5))


def test_classic_photoobj_selection_and_conversion():
    path = shared("sdss/3900/6/269/photoObj-003900-6-0269.fits")
    cat = read_photoobj(path)
    assert len(cat) == 699  # of 981 rows
    assert cat.is_star.sum() == 228
    assert len(read_photoobj(path, primary_only=True)) == 614

    t = fits.getdata(path, 1)
    rows = {int(o): i for i, o in enumerate(t["OBJID"])}
    celeste_angle = read_photoobj(path, celeste_angle=True).angle_rad
    for n in (0, 1, 350, 698):
        i = rows[int(cat.objid[n])]
        assert t["OBJC_TYPE"][i] in (3, 6) and t["NCHILD"][i] == 0
        fd = float(t["FRACDEV"][i, 2])
        assert cat.frac_dev[n] == pytest.approx(fd)
        kind = "DEV" if fd > 0.5 else "EXP"
        np.testing.assert_allclose(cat.star_flux[n], np.maximum(t["PSFFLUX"][i], 1e-6), rtol=1e-6)
        gal = fd * np.maximum(t["DEVFLUX"][i], 1e-6) + (1 - fd) * np.maximum(t["EXPFLUX"][i], 1e-6)
        np.testing.assert_allclose(cat.gal_flux[n], gal, rtol=1e-6)
        assert cat.axis_ratio[n] == pytest.approx(t[f"AB_{kind}"][i, 2])
        assert cat.radius_px[n] == pytest.approx(max(t[f"THETA_{kind}"][i, 2], 1 / 30) / 0.396)
        phi, offset = t[f"PHI_{kind}_DEG"][i, 2], t["PHI_OFFSET"][i, 2]
        assert cat.angle_rad[n] == pytest.approx(np.deg2rad(phi + offset), rel=1e-6)
        assert celeste_angle[n] == pytest.approx(np.deg2rad(phi - offset), rel=1e-6)
    # PHI_OFFSET is about 13.1 deg on this run: the conventions differ by 2 * PHI_OFFSET.
    difference = np.rad2deg(cat.angle_rad - celeste_angle)
    assert np.all((difference > 25.8) & (difference < 26.4))


def test_classic_photoobj_drops_bright_duplicates():
    """OBJC_FLAGS bit 1 (BRIGHT) excludes a row (MODEL.md 7.4, 10), not bit 0 as Celeste's
    `1^2`: the BRIGHT star 1237662226208063636 is Photo's second measurement of the primary
    1237662226208063639, 0.025 arcsec away; no two kept entries are that close."""
    cat = read_photoobj(shared("sdss/3900/6/269/photoObj-003900-6-0269.fits"))
    assert 1237662226208063639 in cat.objid
    assert 1237662226208063636 not in cat.objid
    xyz = np.column_stack([np.cos(np.radians(cat.dec)) * np.cos(np.radians(cat.ra)),
                           np.cos(np.radians(cat.dec)) * np.sin(np.radians(cat.ra)),
                           np.sin(np.radians(cat.dec))])
    gap = np.linalg.norm(xyz[:, None] - xyz[None], axis=2) + 10 * np.eye(len(cat))
    assert np.degrees(gap.min()) * 3600 > 1.0


# --- compressed and plain copies --------------------------------------------------------------

def test_plain_gzip_and_bz2_frames_read_identically(tmp_path):
    src = shared("sdss/1000/1/100/frame-r-001000-1-0100.fits.bz2")
    raw = bz2.decompress(src.read_bytes())
    (tmp_path / "plain.fits").write_bytes(raw)
    (tmp_path / "copy.fits.gz").write_bytes(gzip.compress(raw))
    frames = [read_frame(p) for p in (src, tmp_path / "plain.fits", tmp_path / "copy.fits.gz")]
    for other in frames[1:]:
        for name in ("image", "calib", "allsky", "xinterp", "yinterp"):
            np.testing.assert_array_equal(getattr(frames[0], name), getattr(other, name))


def test_field_from_plain_frame_and_gzipped_fpm(tmp_path):
    names = ["psField-001000-1-0100.fit"]
    data_dir = link_field(tmp_path, CUTOUT, names)
    folder = data_dir / "1000/1/100"
    src = SDSS / "1000/1/100"
    (folder / "frame-r-001000-1-0100.fits").write_bytes(
        bz2.decompress((src / "frame-r-001000-1-0100.fits.bz2").read_bytes()))
    (folder / "fpM-001000-r1-0100.fit.gz").write_bytes(
        gzip.compress((src / "fpM-001000-r1-0100.fit").read_bytes()))
    (mine,) = load_field(data_dir, CUTOUT, bands="r", n_threads=1)
    (orig,) = load_field(SDSS, CUTOUT, bands="r", n_threads=1)
    assert mine.path.name == "frame-r-001000-1-0100.fits"
    np.testing.assert_array_equal(mine.electrons, orig.electrons)
    np.testing.assert_array_equal(mine.sky_nmgy, orig.sky_nmgy)


# --- bad input ------------------------------------------------------------------------------

@contextmanager
def raises_naming(path: Path, match: str):
    """Expect an InputFileError about ``path`` whose message matches ``match``."""
    with pytest.raises(InputFileError, match=match) as info:
        yield
    assert info.value.path == str(path)
    assert str(path) in str(info.value)


def test_truncated_bz2_frame(tmp_path):
    data = shared("sdss/1000/1/100/frame-r-001000-1-0100.fits.bz2").read_bytes()
    bad = tmp_path / "frame-r-001000-1-0100.fits.bz2"
    bad.write_bytes(data[: len(data) // 2])
    with raises_naming(bad, "corrupt or truncated bzip2"):
        read_frame(bad)


def test_corrupt_gzip_fpm(tmp_path):
    data = bytearray(gzip.compress(shared("sdss/1000/1/100/fpM-001000-r1-0100.fit").read_bytes()))
    data[-6] ^= 0xFF  # inside the CRC32 trailer
    bad = tmp_path / "fpM-001000-r1-0100.fit.gz"
    bad.write_bytes(bytes(data))
    with raises_naming(bad, "corrupt or truncated gzip"):
        read_fpm_mask(bad, (100, 100))


def test_truncated_plain_fits(tmp_path):
    raw = bz2.decompress(shared("sdss/3900/6/269/frame-u-003900-6-0269.fits.bz2").read_bytes())
    bad = tmp_path / "frame-u-003900-6-0269.fits"
    bad.write_bytes(raw[: len(raw) - 2880])
    with raises_naming(bad, "truncated"):
        read_frame(bad)


def test_photoobj_cut_inside_its_table_header_is_an_error_not_an_empty_catalog(tmp_path):
    raw = shared("sdss/3900/6/269/photoObj-003900-6-0269.fits").read_bytes()
    bad = tmp_path / "photoObj-003900-6-0269.fits"
    bad.write_bytes(raw[:5760 + 2000])  # the primary HDU (5760 bytes) and part of the table header
    with raises_naming(bad, "not a readable FITS file"):
        read_photoobj(bad)


def test_frame_missing_sky_hdu(tmp_path):
    with fits.open(shared("sdss/1000/1/100/frame-r-001000-1-0100.fits.bz2")) as h:
        bad = tmp_path / "frame-r-001000-1-0100.fits"
        fits.HDUList([h[0].copy(), h[1].copy()]).writeto(bad)
    with raises_naming(bad, "has 2 HDUs, expected at least 3"):
        read_frame(bad)


def test_frame_with_wrong_calibration_vector(tmp_path):
    with fits.open(shared("sdss/1000/1/100/frame-r-001000-1-0100.fits.bz2")) as h:
        hdus = fits.HDUList([hdu.copy() for hdu in h])
    hdus[1].data = hdus[1].data[:50]
    bad = tmp_path / "short-calib.fits"
    hdus.writeto(bad)
    with raises_naming(bad, "has 50 values, image has 100 columns"):
        read_frame(bad)
    hdus[1].data = np.zeros(100, np.float32)
    hdus.writeto(bad, overwrite=True)
    with raises_naming(bad, "non-positive"):
        read_frame(bad)


def test_all_masked_frame(tmp_path):
    data_dir = link_field(tmp_path, CUTOUT, ["psField-001000-1-0100.fit",
                                             "fpM-001000-r1-0100.fit"])
    with fits.open(SDSS / "1000/1/100/frame-r-001000-1-0100.fits.bz2") as h:
        hdus = fits.HDUList([hdu.copy() for hdu in h])
    hdus[0].data = np.full((100, 100), np.nan, np.float32)
    bad = data_dir / "1000/1/100/frame-r-001000-1-0100.fits"
    hdus.writeto(bad)
    with raises_naming(bad, "no finite pixel"):
        load_field(data_dir, CUTOUT, bands="r", n_threads=1)


def test_missing_band_file(tmp_path):
    names = ["psField-002583-2-0136.fit", "photoField-002583-2.fits"]
    names += [f"fpM-002583-{b}2-0136.fit" for b in "ugriz"]
    names += [f"frame-{b}-002583-2-0136.fits.bz2" for b in "ugrz"]  # no i
    data_dir = link_field(tmp_path, M2, names)
    expected = data_dir / "2583/2/136/frame-i-002583-2-0136.fits"
    with raises_naming(expected, "missing"):
        load_field(data_dir, M2, n_threads=1)


def test_u_only_field_names_every_missing_file():
    """3900/6/269 has only its u frame: one error names the first missing frame and lists the
    other missing ones, before any file is read."""
    shared("sdss/3900/6/269/frame-u-003900-6-0269.fits.bz2")
    with pytest.raises(InputFileError, match="missing") as info:
        load_field(SDSS, FieldID(3900, 6, 269), n_threads=1)
    assert info.value.path == str(SDSS / "3900/6/269/frame-g-003900-6-0269.fits")
    message = str(info.value)
    for band in "riz":
        assert f"frame-{band}-003900-6-0269.fits" in message
    assert "frame-u-" not in message and "fpM-" not in message


def test_photofield_without_the_field_row():
    path = shared("sdss/2583/2/photoField-002583-2.fits")
    with raises_naming(path, "no row for field 999"):
        read_photofield(path, 999)


def test_not_a_fits_file(tmp_path):
    bad = tmp_path / "psField-001000-1-0100.fit"
    bad.write_text("<html>404 Not Found</html>\n")
    with raises_naming(bad, "not a readable FITS file"):
        read_psfield(bad)


def test_psfield_missing_column(tmp_path):
    raw = shared("sdss/1000/1/100/psField-001000-1-0100.fit").read_bytes()
    assert raw.count(b"'RROWS   '") == 5  # the TTYPE card of each band's table
    bad = tmp_path / "psField-001000-1-0100.fit"
    bad.write_bytes(raw.replace(b"'RROWS   '", b"'XROWS   '"))
    with raises_naming(bad, r"HDU 1 \(u-band PSF\) lacks column\(s\) RROWS"):
        read_psfield(bad)


def test_fitsfile_missing_file(tmp_path):
    with raises_naming(tmp_path / "nope.fits", "cannot read"):
        FitsFile(tmp_path / "nope.fits")

