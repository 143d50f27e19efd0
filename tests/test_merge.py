"""``celeste merge`` on simulated fields that share a strip of sky."""

import hashlib
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table, vstack
from click.testing import CliRunner

from celestecli.catalog import InputFile, Provenance, empty_catalog, read_catalog, write_catalog
from celestecli.errors import UsageError
from celestecli.merge import edge_distance, merge_catalogs

REPO = Path(__file__).resolve().parents[1]
PX = 0.396 / 3600  # degrees per pixel
W, H = 200, 150  # simulated image size (columns, rows)
OVERLAP = 30  # rows shared by consecutive fields
RA0 = 10.0


def invoke(*args):
    from celestecli.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def celeste(*args):
    return subprocess.run([sys.executable, "-m", "celestecli", *map(str, args)],
                          capture_output=True, text=True, cwd=REPO,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def true_sources():
    """Grid of sources (x, global row) 7 px apart over two fields, plus a close pair in A."""
    xs, ys = np.meshgrid(np.arange(5, W - 4, 7.0), np.arange(3, 2 * H - OVERLAP, 7.0))
    x, y = xs.ravel(), ys.ravel()
    # two sources 0.5 px apart in field A alone: one field never merges its own sources
    return np.concatenate([x, [101.5, 101.5]]), np.concatenate([y, [52.5, 53.0]])


def field_catalog(field: int, row0: int, seed: int) -> Table:
    """Catalog of simulated field ``field`` whose row 0 is global row ``row0``."""
    rng = np.random.default_rng(seed)
    tx, ty = true_sources()
    inside = (ty - row0 >= -0.5) & (ty - row0 <= H - 0.5)
    n = int(inside.sum())
    x = tx[inside] + rng.uniform(-0.1, 0.1, n)  # each field measures its own position
    y = ty[inside] - row0 + rng.uniform(-0.1, 0.1, n)
    t = empty_catalog(n)
    t["objid"] = np.arange(n, dtype=np.int64) + field * 100_000
    t["run"], t["camcol"], t["field"] = 94, 1, field
    t["x"], t["y"] = x, y
    t["ra"] = RA0 + x * PX
    t["dec"] = (y + row0) * PX
    t["is_star"] = rng.uniform(0, 1, n)
    t["flux_r_nmgy"] = rng.lognormal(1, 1, n)
    return t


def write_fields(folder: Path, fmt: str = "fits",
                 releases=(17, 17)) -> tuple[Path, Path]:
    frame = folder / "frame-r-000094-1-0010.fits"
    frame.write_bytes(b"a frame")
    paths = []
    for (field, row0, seed), release in zip(((10, 0, 1), (11, H - OVERLAP, 2)), releases,
                                            strict=True):
        prov = Provenance(command_line=f"celeste infer 94/1/{field}", fields=[f"94/1/{field}"],
                          release=release, rerun=301, inputs=[InputFile.of(frame)],
                          extra={"IMAGEW": W, "IMAGEH": H})
        path = folder / f"celeste-000094-1-{field:04d}.{fmt}"
        write_catalog(field_catalog(field, row0, seed), path, provenance=prov)
        paths.append(path)
    return paths[0], paths[1]


def test_overlap_sources_appear_once_and_all_others_are_kept(tmp_path):
    a, b = write_fields(tmp_path)
    cat_a, cat_b = read_catalog(a), read_catalog(b)
    result = merge_catalogs([a, b])
    out = result.table
    tx, ty = true_sources()
    assert len(out) == tx.size  # every source once
    assert result.n_in == len(cat_a) + len(cat_b)
    in_both = (ty >= H - OVERLAP - 0.5) & (ty <= H - 0.5)
    assert result.n_duplicates == int(in_both.sum()) > 50
    # each output row is within 0.2 px of a distinct true source
    gx = (np.asarray(out["ra"]) - RA0) / PX
    gy = np.asarray(out["dec"]) / PX
    d = np.hypot(gx[:, None] - tx, gy[:, None] - ty)
    assert np.all(d.min(axis=1) < 0.2)
    assert np.unique(d.argmin(axis=1)).size == tx.size
    # the copy kept lies at least as far from its field's edge as the copy dropped
    for table, other in ((cat_a, cat_b), (cat_b, cat_a)):
        both = np.isin(table["objid"], out["objid"])
        ex = edge_distance(table["x"], table["y"], W, H)
        for i in np.flatnonzero(both):
            sep = np.hypot((other["ra"] - table["ra"][i]) / PX, (other["dec"] - table["dec"][i])
                           / PX)
            j = np.flatnonzero(sep < 1)
            if j.size:
                assert ex[i] >= edge_distance(other["x"][j], other["y"][j], W, H).max()
    # the close pair in field A survives
    assert np.sum(np.hypot(gx - 101.5, gy - 52.75) < 0.5) == 2
    assert list(out["objid"]) == sorted(out["objid"])  # sorted by run, camcol, field, objid


def test_kept_copy_switches_fields_at_the_middle_of_the_overlap(tmp_path):
    a, b = write_fields(tmp_path)
    out = merge_catalogs([a, b]).table
    gy = np.asarray(out["dec"]) / PX
    middle = H - OVERLAP + (OVERLAP - 1) / 2  # global row equidistant from both edges
    strip = (gy > H - OVERLAP - 0.5) & (gy < H - 0.5)
    central = strip & (np.asarray(out["x"]) > 40) & (np.asarray(out["x"]) < W - 40)
    fields = np.asarray(out["field"])
    assert np.all(fields[central & (gy < middle - 0.3)] == 10)
    assert np.all(fields[central & (gy > middle + 0.3)] == 11)


def test_order_independent_and_idempotent(tmp_path):
    a, b = write_fields(tmp_path)
    out, swapped = tmp_path / "merged.fits", tmp_path / "swapped.fits"
    proc = celeste("merge", a, b, "-o", out)  # a real process, as a user would
    assert proc.returncode == 0, proc.stderr
    first = out.read_bytes()
    assert celeste("merge", a, b, "-o", out).returncode == 0  # the same command again
    assert invoke("merge", b, a, "-o", swapped).exit_code == 0
    with fits.open(out) as h1, fits.open(swapped) as h2:
        for name in ("CATALOG", "INPUTS"):
            assert h1[name].data.tobytes() == h2[name].data.tobytes()
    # the same command again gives the same file apart from the date (and the checksum of
    # the header holding it)
    again = out.read_bytes()
    assert len(first) == len(again)
    differing = [i for i in range(len(first)) if first[i] != again[i]]
    header_end = first.find(b"XTENSION")
    assert all(i < header_end for i in differing)
    with fits.open(io.BytesIO(first)) as h1, fits.open(out) as h3:
        for x, y in zip(h1, h3, strict=True):
            skip = {"DATE", "CHECKSUM"}
            assert [tuple(c) for c in x.header.cards if c.keyword not in skip] == \
                [tuple(c) for c in y.header.cards if c.keyword not in skip]


def test_ecsv_output_is_idempotent_and_streams_to_stdout(tmp_path):
    a, b = write_fields(tmp_path, fmt="ecsv")
    outs = [tmp_path / "m1.ecsv", tmp_path / "m2.ecsv"]
    for out in outs:
        assert invoke("merge", b, a, "-o", out).exit_code == 0
    lines = [p.read_text().splitlines() for p in outs]
    diff = [(x, y) for x, y in zip(*lines, strict=True) if x != y]
    assert len(lines[0]) == len(lines[1]) and all("date:" in x for x, _ in diff)
    streamed = invoke("merge", a, b, "-o", "-")
    assert streamed.exit_code == 0 and streamed.stdout.startswith("# %ECSV")
    assert len(Table.read(streamed.stdout, format="ascii.ecsv")) == len(read_catalog(outs[0]))
    csv = invoke("merge", a, b, "-o", "-", "--format", "csv")
    assert csv.stdout.splitlines()[0].startswith("objid,")


def test_provenance_records_every_input(tmp_path):
    a, b = write_fields(tmp_path)
    out = tmp_path / "merged.fits"
    assert invoke("merge", a, b, "-o", out).exit_code == 0
    prov = read_catalog(out).meta["provenance"]
    assert prov.fields == ["94/1/10", "94/1/11"]
    direct = {f.path: f.sha256 for f in prov.inputs if not f.via}
    assert direct == {str(p.resolve()): hashlib.sha256(p.read_bytes()).hexdigest()
                      for p in (a, b)}
    inherited = [f for f in prov.inputs if f.via]
    assert {f.via for f in inherited} == {str(a.resolve()), str(b.resolve())}
    assert all(f.path.endswith("frame-r-000094-1-0010.fits") for f in inherited)
    notes = {f.path: f.note for f in prov.inputs if not f.via}
    assert "celeste infer 94/1/10" in notes[str(a.resolve())]
    assert notes[str(b.resolve())].startswith(f"{len(read_catalog(b))} rows; celeste ")
    assert prov.extra["NDUPS"] > 0 and (prov.extra["IMAGEW"], prov.extra["IMAGEH"]) == (W, H)
    assert (prov.release, prov.rerun) == (17, 301)  # what both inputs say
    assert fits.getheader(out, 0)["SDSSDR"] == 17
    again = merge_catalogs([out])  # a merged catalog merges again, keeping its ancestry
    assert len(again.table) == len(read_catalog(out))
    assert any(" > " in f.via for f in again.provenance.inputs)


def test_merged_catalog_names_no_release_where_its_inputs_differ_or_one_does_not_say(tmp_path):
    for sub in ("mixed", "unknown"):
        (tmp_path / sub).mkdir()
    a, b = write_fields(tmp_path / "mixed", releases=(16, 17))
    assert merge_catalogs([a, b]).provenance.release is None
    a, b = write_fields(tmp_path / "unknown", releases=(None, 17))
    merged = merge_catalogs([a, b]).provenance
    assert merged.release is None and merged.rerun == 301


def test_a_bad_input_among_several_leaves_no_output(tmp_path):
    a, b = write_fields(tmp_path)
    broken = tmp_path / "celeste-000094-1-0012.fits"
    broken.write_bytes(a.read_bytes()[:5000])  # truncated
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "merged.fits"
    result = invoke("merge", a, b, broken, "-o", out)
    assert result.exit_code == 1
    assert str(broken) in result.stderr
    assert list(out_dir.iterdir()) == []


def test_unwritable_output_fails_cleanly(tmp_path):
    a, b = write_fields(tmp_path)
    result = invoke("merge", a, b, "-o", tmp_path / "missing" / "merged.fits")
    assert result.exit_code == 1 and "cannot write" in result.stderr
    assert not (tmp_path / "missing").exists()


def test_output_that_is_an_input_is_refused(tmp_path):
    a, b = write_fields(tmp_path)
    before = a.read_bytes()
    result = invoke("merge", a, b, "-o", tmp_path / "." / a.name)
    assert result.exit_code == 2 and "is one of the catalogs to merge" in result.stderr
    assert a.read_bytes() == before


def test_inputs_that_cannot_be_merged_are_refused(tmp_path):
    a, b = write_fields(tmp_path)
    with pytest.raises(UsageError, match="94/1/10 is in both"):
        copy = tmp_path / "copy-of-a.fits"
        copy.write_bytes(a.read_bytes())
        merge_catalogs([a, copy])
    thin = read_catalog(b)
    thin.remove_column("flux_r")
    other = tmp_path / "thin.fits"
    write_catalog(thin, other)
    with pytest.raises(UsageError, match="thin.fits has other columns .* lacks flux_r .*"
                       "`celeste infer` remakes the older ones"):
        merge_catalogs([a, other])
    no_xy = read_catalog(b)
    no_xy.remove_columns(["x", "y"])
    nopos = tmp_path / "nopos.ecsv"
    write_catalog(no_xy, nopos)
    result = invoke("merge", a, nopos, "-o", tmp_path / "m.fits")
    assert result.exit_code == 1 and "missing required columns: x, y" in result.stderr
    assert merge_catalogs([a, a]).n_duplicates == 0  # the same path twice is merged once


def region_catalogs(folder: Path, regions) -> list[Path]:
    """Catalogs of field 94/1/10 as ``infer --region`` writes them: each the sources inside its
    box (``REGION``, X0:X1,Y0:Y1 end exclusive; None: a whole-field run)."""
    table = field_catalog(10, 0, seed=1)
    paths = []
    for i, region in enumerate(regions):
        extra = {"IMAGEW": W, "IMAGEH": H}
        inside = np.ones(len(table), dtype=bool)
        if region is not None:
            extra["REGION"] = region
            (x0, x1), (y0, y1) = (map(int, part.split(":")) for part in region.split(","))
            inside = ((table["x"] >= x0 - 0.5) & (table["x"] < x1 - 0.5)
                      & (table["y"] >= y0 - 0.5) & (table["y"] < y1 - 0.5))
        path = folder / f"part{i}.fits"
        write_catalog(table[inside], path,
                      provenance=Provenance(fields=["94/1/10"], extra=extra))
        paths.append(path)
    return paths


def add_source(path: Path, objid: int, x: float, y: float) -> None:
    """Append to a catalog a copy of its first row moved to field pixel (x, y)."""
    table = read_catalog(path)
    prov = table.meta["provenance"]
    row = {name: table[name][0] for name in table.colnames}
    row.update(objid=objid, x=x, y=y, ra=RA0 + x * PX, dec=y * PX)
    table.add_row([row[name] for name in table.colnames])
    write_catalog(table, path, provenance=prov)


def test_region_runs_of_one_field_merge_when_their_boxes_do_not_overlap(tmp_path):
    left, right = region_catalogs(tmp_path, ["0:100,0:150", "100:200,0:150"])
    result = merge_catalogs([left, right])
    whole = field_catalog(10, 0, seed=1)
    assert sorted(result.table["objid"]) == sorted(whole["objid"])  # each source once
    assert result.n_duplicates == 0
    assert result.provenance.fields == ["94/1/10"]


def test_a_source_on_the_border_of_two_regions_is_kept_once_from_the_deeper_side(tmp_path):
    # both runs found one source on their shared border (detections of different cut-outs
    # differ a little): the left one at x = 99.4, 0.1 px inside its box, the right one at
    # x = 99.7, 0.2 px inside its own (box edges at 99.5); their frame edges would pick the left
    paths = region_catalogs(tmp_path, ["0:100,0:150", "100:200,0:150"])
    for path, objid, x in zip(paths, (7001, 7002), (99.4, 99.7), strict=True):
        add_source(path, objid, x, 52.0)
    result = merge_catalogs(paths)
    assert result.n_duplicates == 1
    assert 7002 in result.table["objid"] and 7001 not in result.table["objid"]


@pytest.mark.parametrize("regions, named", [
    (["0:101,0:150", "100:200,0:150"], r"\(0:101,0:150\) and .*part1.fits \(100:200,0:150\)"),
    (["0:100,0:150", None], r"\(0:100,0:150\) and .*part1.fits \(whole field: no REGION\)"),
])
def test_overlapping_or_whole_field_runs_of_one_field_are_refused(tmp_path, regions, named):
    paths = region_catalogs(tmp_path, regions)
    with pytest.raises(UsageError, match=r"94/1/10 is in both .*part0.fits " + named):
        merge_catalogs(paths)


def test_region_runs_split_along_y_merge_and_share_a_border_source(tmp_path):
    # the boxes share columns and split the rows; a source on their border (y = 74.5) found at
    # y = 74.4 by the lower-y run (0.1 px inside its box) and 74.7 by the other (0.2 px inside)
    paths = region_catalogs(tmp_path, ["0:200,0:75", "0:200,75:150"])
    for path, objid, y in zip(paths, (7001, 7002), (74.4, 74.7), strict=True):
        add_source(path, objid, 52.0, y)
    result = merge_catalogs(paths)
    assert result.n_duplicates == 1
    assert 7002 in result.table["objid"] and 7001 not in result.table["objid"]
    assert len(result.table) == len(field_catalog(10, 0, seed=1)) + 1


def test_one_input_holding_two_overlapping_fields_loses_its_duplicates(tmp_path):
    a, b = write_fields(tmp_path)
    apart = merge_catalogs([a, b])
    both = tmp_path / "both.fits"  # the two fields' rows in one file, as a user may stack them
    write_catalog(vstack([read_catalog(a), read_catalog(b)], metadata_conflicts="silent"), both,
                  provenance=Provenance(extra={"IMAGEW": W, "IMAGEH": H}))
    together = merge_catalogs([both])
    assert apart.n_duplicates > 0 and together.n_duplicates == apart.n_duplicates
    assert sorted(together.table["objid"]) == sorted(apart.table["objid"])


@pytest.mark.parametrize("fmt", ["ecsv", "csv"])
def test_region_runs_as_text_merge_from_ecsv_and_csv_is_refused_saying_why(tmp_path, fmt):
    paths = []
    for path in region_catalogs(tmp_path, ["0:100,0:150", "100:200,0:150"]):
        table = read_catalog(path)
        paths.append(path.with_suffix(f".{fmt}"))
        write_catalog(table, paths[-1], provenance=table.meta["provenance"])
    if fmt == "ecsv":  # ECSV keeps the provenance, REGION included
        assert len(merge_catalogs(paths).table) == len(field_catalog(10, 0, seed=1))
        return
    with pytest.raises(UsageError, match=r"part0.csv \(whole field: no provenance, so no "
                                         r"REGION \(CSV keeps none; use FITS or ECSV\)\)"):
        merge_catalogs(paths)


def test_a_merged_catalog_of_regions_counts_as_its_field_with_no_region(tmp_path):
    a, b, c = region_catalogs(tmp_path, ["0:100,0:150", "100:150,0:150", "150:200,0:150"])
    first = merge_catalogs([a, b])
    ab = tmp_path / "ab.fits"
    write_catalog(first.table, ab, provenance=first.provenance)
    with pytest.raises(UsageError, match=r"ab.fits \(whole field: no REGION\) and "
                                         r".*part2.fits \(150:200,0:150\)"):
        merge_catalogs([ab, c])


def test_fields_of_empty_inputs_are_recorded(tmp_path):
    # a --region run of a box without sources writes an empty catalog of its field
    full, empty = region_catalogs(tmp_path, ["0:200,0:150", "0:1,0:1"])
    other = tmp_path / "other.fits"
    write_catalog(empty_catalog(0), other, provenance=Provenance(
        fields=["94/1/11"], extra={"IMAGEW": W, "IMAGEH": H, "REGION": "0:1,0:1"}))
    assert len(read_catalog(empty)) == 0
    assert merge_catalogs([other]).provenance.fields == ["94/1/11"]
    result = merge_catalogs([full, empty, other])
    assert result.provenance.fields == ["94/1/10", "94/1/11"]
    assert len(result.table) == len(read_catalog(full))


def test_edge_distance():
    np.testing.assert_allclose(edge_distance([0, 100, 2047, 1000], [700, 0, 700, 744], 2048,
                                             1489), [0.5, 0.5, 0.5, 744.5])
    assert edge_distance([np.nan], [3.0], 2048, 1489)[0] == -np.inf
