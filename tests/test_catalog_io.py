"""Catalog schema, provenance and atomic FITS / ECSV / CSV reading and writing."""

import hashlib
import os
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from celestecli.catalog import (
    COLUMN_NAMES,
    SCHEMA,
    InputFile,
    OutputError,
    Provenance,
    empty_catalog,
    read_catalog,
    validate_columns,
    write_catalog,
)
from celestecli.catalog.schema import catalog_from_columns
from celestecli.errors import InputFileError, UsageError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared(rel: str) -> Path:
    path = SHARED / rel
    if not path.exists():
        pytest.skip(f"../shared/data not found: {path}")
    return path


def sample_catalog(n: int = 5) -> Table:
    rng = np.random.default_rng(3)
    t = empty_catalog(n)
    t["objid"] = np.arange(n, dtype=np.int64) + (2**62 + 1)  # beyond float64 precision
    t["run"], t["camcol"], t["field"] = 4263, 5, 119
    t["ra"] = rng.uniform(0.44, 0.61, n)
    t["dec"] = rng.uniform(0.41, 0.63, n)
    t["is_star"] = rng.uniform(0, 1, n)
    t["prob_galaxy"] = 1 - t["is_star"]
    for band in "ugriz":
        t[f"flux_{band}"] = rng.lognormal(1, 1, n)
        t[f"flux_{band}_ivar"] = rng.uniform(1, 10, n)
    t["flux_u"][0] = -0.5  # a negative flux: its magnitude stays NaN
    t["gal_angle_deg"] = rng.uniform(0, 180, n)
    t["converged"] = rng.uniform(size=n) > 0.5
    t["flags"] = [0, 1, 2, 4, 8][:n]
    return t


def provenance(tmp_path: Path) -> Provenance:
    frame = tmp_path / "frame-r-004263-5-0119.fits"
    frame.write_bytes(b"pretend frame bytes")
    return Provenance(command_line="celeste infer 4263/5/119", fields=["4263/5/119"],
                      release=12, rerun=301, n_threads=4, n_procs=1, openmp=True, seed=7,
                      inputs=[InputFile.of(frame, url="https://example.invalid/frame")],
                      history=["initialised from photoObj"], extra={"IMAGEW": 2048},
                      git_revision="0123abc-dirty")


def assert_same_values(a: Table, b: Table) -> None:
    assert a.colnames == b.colnames
    for name in a.colnames:
        x, y = np.asarray(a[name]), np.asarray(b[name])
        if x.dtype.kind == "f":
            np.testing.assert_array_equal(x, y, err_msg=name)  # NaN == NaN here
        else:
            assert np.array_equal(x, y), name


def test_empty_catalog_has_every_schema_column_with_its_dtype_unit_and_fill():
    t = empty_catalog(4)
    assert t.colnames == list(COLUMN_NAMES)
    assert len(t) == 4
    for spec in SCHEMA:
        col = t[spec.name]
        assert col.dtype == np.dtype(spec.dtype), spec.name
        assert col.unit == spec.unit, spec.name
        assert col.description, spec.name
    assert np.all(np.isnan(t["flux_r"])) and t["flux_r"].unit == u.nanomaggy
    assert not np.any(t["converged"]) and np.all(t["n_iter"] == 0)
    assert {"x", "y", "flux_r_ivar", "mag_r_err", "color_iz_stderr"} <= set(t.colnames)


def test_catalog_from_columns_casts_to_the_schema_and_fills_the_rest():
    t = catalog_from_columns(3, {"run": 4263, "camcol": 5, "ra": [1.0, 2.0, 3.0],
                                 "n_iter": np.array([1, 2, 3], dtype=np.int64)})
    assert list(t["camcol"]) == [5, 5, 5] and list(t["run"]) == [4263] * 3
    for spec in SCHEMA:
        assert t[spec.name].dtype == np.dtype(spec.dtype), spec.name
        assert t[spec.name].unit == spec.unit and t[spec.name].description, spec.name
    assert list(t["ra"]) == [1.0, 2.0, 3.0] and np.all(np.isnan(t["flux_r"]))
    with pytest.raises(ValueError, match="not schema columns: radius"):
        catalog_from_columns(3, {"radius": [1.0, 2.0, 3.0]})
    with pytest.raises(TypeError):  # a float is no row count
        catalog_from_columns(3, {"n_iter": [1.5, 2.0, 3.0]})
    with pytest.raises(TypeError, match="column n_iter"):  # nor as one value for every row
        catalog_from_columns(3, {"n_iter": 1.5})
    with pytest.raises(TypeError, match="column camcol"):  # no sign in an unsigned column
        catalog_from_columns(3, {"camcol": -1})


def test_validate_columns_names_every_missing_column():
    t = Table({"ra": [1.0], "dec": [2.0]})
    validate_columns(t, ["ra", "dec"], "cat.fits")
    with pytest.raises(InputFileError, match=r"cat.fits: missing required columns: is_star, "
                                             r"flux_r_nmgy"):
        validate_columns(t, ["ra", "is_star", "dec", "flux_r_nmgy"], "cat.fits")


@pytest.mark.parametrize("name", ["cat.fits", "cat.fits.gz", "cat.ecsv"])
def test_round_trip_keeps_values_units_and_provenance(tmp_path, name):
    t = sample_catalog()
    prov = provenance(tmp_path)
    path = tmp_path / name
    write_catalog(t, path, provenance=prov)
    back = read_catalog(path)
    assert_same_values(t, back)
    assert back["objid"][0] == 2**62 + 1
    assert back["flux_g"].unit == u.nanomaggy
    assert back["flux_g_ivar"].unit == u.nanomaggy**-2
    assert back["ra"].unit == u.deg and back["gal_radius_px"].unit == u.pix
    p = back.meta["provenance"]
    assert p.fields == ["4263/5/119"]
    assert (p.release, p.rerun, p.n_threads, p.n_procs, p.openmp, p.seed) == (12, 301, 4, 1,
                                                                               True, 7)
    assert p.command_line == "celeste infer 4263/5/119"
    assert p.inputs == prov.inputs
    assert p.history == ["initialised from photoObj"]
    assert p.extra["IMAGEW"] == 2048
    assert dict(p.dependencies)["numpy"] == np.__version__
    assert p.date == prov.date
    assert p.git_revision == prov.git_revision == "0123abc-dirty"


def test_fits_layout_units_checksums_and_inputs_table(tmp_path):
    prov = provenance(tmp_path)
    path = tmp_path / "cat.fits"
    write_catalog(sample_catalog(), path, provenance=prov)
    with fits.open(path, checksum=True) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "CATALOG", "INPUTS"]
        hdr = hdul[0].header
        for key in ("CELESTEV", "GITREV", "DATE", "CMDLINE", "NTHREADS", "OPENMP", "FIELDS",
                    "CHECKSUM"):
            assert key in hdr, key
        assert (hdr["RUN"], hdr["CAMCOL"], hdr["FIELD"]) == (4263, 5, 119)
        deps = {hdr[f"DEPNAM{i:02d}"]: hdr[f"DEPVER{i:02d}"] for i in range(3)}
        assert deps["python"] and deps["numpy"] == np.__version__
        cat = hdul["CATALOG"]
        assert cat.verify_checksum() == 1 and cat.verify_datasum() == 1
        units = {cat.header[f"TTYPE{i}"]: cat.header.get(f"TUNIT{i}")
                 for i in range(1, cat.header["TFIELDS"] + 1)}
        assert units["flux_r"] == "nanomaggy" and units["flux_r_nmgy"] == "nanomaggy"
        assert units["ra"] == "deg" and units["mag_r"] == "mag"
        assert units["objid"] is None and cat.columns["objid"].format == "K"
        inputs = hdul["INPUTS"].data
        frame = tmp_path / "frame-r-004263-5-0119.fits"
        assert inputs["path"][0] == str(frame.resolve())
        assert inputs["sha256"][0] == hashlib.sha256(frame.read_bytes()).hexdigest()
        assert inputs["url"][0] == "https://example.invalid/frame"


def test_many_fields_and_long_command_line_survive(tmp_path):
    fields = [f"4263/5/{f}" for f in range(100, 160)]
    cmd = "celeste infer " + " ".join(fields)
    path = tmp_path / "many.fits"
    write_catalog(sample_catalog(2), path, provenance=Provenance(command_line=cmd, fields=fields))
    p = read_catalog(path).meta["provenance"]
    assert p.fields == fields and p.command_line == cmd
    with fits.open(path) as hdul:
        assert "RUN" not in hdul[0].header and hdul[0].header["NFIELDS"] == 60


def test_csv_round_trip_keeps_values(tmp_path):
    t = sample_catalog()
    path = tmp_path / "cat.csv"
    write_catalog(t, path)
    text = path.read_text()
    assert text.splitlines()[0].startswith("objid,run,camcol,field,ra,dec")
    back = read_catalog(path)
    assert_same_values(t, back)
    assert back["converged"].dtype == bool
    assert back.meta["provenance"] is None


def test_every_format_reads_back_with_the_schema_dtypes(tmp_path):
    # CSV stores no dtypes: its integers read as int64 unless read_catalog restores them
    t = sample_catalog()
    for name in ("cat.fits", "cat.ecsv", "cat.csv"):
        write_catalog(t, tmp_path / name)
        back = read_catalog(tmp_path / name)
        for spec in SCHEMA:
            assert back[spec.name].dtype.newbyteorder("=") == np.dtype(spec.dtype), (name, spec)
    wide = tmp_path / "wide.csv"  # a value that does not fit the schema dtype stays as read
    wide.write_text("objid,run,ra,dec\n1,70000,1.0,2.0\n")
    assert read_catalog(wide)["run"][0] == 70000


@pytest.mark.parametrize("is_star", [("1", "", "0"), ("true", "", "False")])
def test_blank_cells_read_as_nan_never_as_zero_or_false(tmp_path, is_star):
    path = tmp_path / "cat.csv"
    path.write_text("objid,ra,dec,is_star,gal_axis_ratio,n_iter\n"
                    f"8647474692482203853,1.0,2.0,{is_star[0]},,3\n"
                    f"8647474692482203854,1.1,2.1,{is_star[1]},,\n"
                    f",1.2,2.2,{is_star[2]},,5\n")
    t = read_catalog(path)
    np.testing.assert_array_equal(t["is_star"], [1.0, np.nan, 0.0])
    np.testing.assert_array_equal(t["gal_axis_ratio"], [np.nan] * 3)
    np.testing.assert_array_equal(t["n_iter"], [3.0, np.nan, 5.0])
    # a blank in identifiers too large for float64 stays masked; the others stay exact
    assert t["objid"].mask.tolist() == [False, False, True]
    assert t["objid"][1] == 8647474692482203854


def test_format_comes_from_content_when_the_name_has_no_extension(tmp_path):
    for fmt in ("fits", "ecsv", "csv"):
        path = tmp_path / f"noext-{fmt}"
        write_catalog(sample_catalog(), path, fmt=fmt)
        assert read_catalog(path).meta["format"] == fmt


def test_stream_to_stdout(capsys):
    t = sample_catalog(3)
    write_catalog(t, "-")
    out = capsys.readouterr().out
    assert out.startswith("# %ECSV") and "nmgy" in out and "provenance" in out
    write_catalog(t, "-", fmt="csv")
    assert capsys.readouterr().out.splitlines()[0].startswith("objid,")
    with pytest.raises(UsageError, match="cannot stream fits"):
        write_catalog(t, "-", fmt="fits")


def test_unknown_output_extension_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="extension"):
        write_catalog(sample_catalog(), tmp_path / "cat.txt")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "cat.fits"
    path.write_bytes(b"old content")
    bad = sample_catalog()
    bad["junk"] = np.array([object()] * len(bad), dtype=object)  # cannot become a FITS column
    with pytest.raises(Exception):  # noqa: B017  (whatever astropy raises)
        write_catalog(bad, path)
    assert path.read_bytes() == b"old content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cat.fits"]


def test_unwritable_destination_raises_output_error_naming_it(tmp_path):
    missing_dir = tmp_path / "no" / "such" / "dir"
    with pytest.raises(OutputError, match=str(missing_dir / "cat.fits")):
        write_catalog(sample_catalog(), missing_dir / "cat.fits")
    if os.geteuid() != 0:  # root ignores directory permissions
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(OutputError):
            write_catalog(sample_catalog(), locked / "cat.ecsv")
        assert list(locked.iterdir()) == []


def test_corrupt_or_truncated_fits_is_reported_with_its_name(tmp_path):
    path = tmp_path / "cat.fits"
    write_catalog(sample_catalog(), path)
    data = bytearray(path.read_bytes())
    with fits.open(path) as hdul:
        offset = hdul.fileinfo(1)["datLoc"] + 10
    data[offset] ^= 0xFF
    corrupt = tmp_path / "corrupt.fits"
    corrupt.write_bytes(bytes(data))
    with pytest.raises(InputFileError, match="corrupt.fits: corrupt FITS file"):
        read_catalog(corrupt)
    truncated = tmp_path / "truncated.fits"
    truncated.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(InputFileError, match="truncated.fits"):
        read_catalog(truncated)
    with pytest.raises(InputFileError, match="no such file"):
        read_catalog(tmp_path / "absent.fits")


def test_garbage_text_is_reported_with_its_name(tmp_path):
    path = tmp_path / "bad.ecsv"
    path.write_text("# %ECSV 1.0\n# ---\n# this is not yaml: [\n")
    with pytest.raises(InputFileError, match="bad.ecsv: not a readable ECSV table"):
        read_catalog(path)


def test_reads_celeste_jl_result_tables():
    truth = read_catalog(shared("celeste_results/s82/matched_truth.csv"))
    assert len(truth) == 385 and truth["is_star"].dtype == bool
    assert truth["objid"].dtype == np.int64
    assert np.isnan(truth["gal_frac_dev"][0])  # empty cell of a star's shape -> NaN
    mc = read_catalog(shared("celeste_results/s82/matched_mc.csv"))
    assert mc["objid"][0] == "samp_244"
    assert mc["flux_r_nmgy"].unit == u.nanomaggy  # schema unit applied to a plain CSV
