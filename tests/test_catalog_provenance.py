"""Provenance of infer's catalogs: inputs fetched by ``celeste fetch`` keep their URL, and the
catalog names the SDSS data release they came from (ARCHITECTURE.md 5, ENGINEERING.md 3.4)."""

import os
import subprocess
import sys
from pathlib import Path

from astropy.io import fits
from sas_server import SASServer
from sim_fields import source, write_sources

from celestecli.catalog.io import read_catalog
from celestecli.fields import FieldID
from celestecli.infer.inputs import input_files, release_of
from celestecli.sdss.manifest import Manifest

REPO = Path(__file__).resolve().parents[1]
FID = FieldID(9000, 1, 1)


def celeste(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "celestecli", *args], capture_output=True,
                          text=True, env=env, stdin=subprocess.DEVNULL, timeout=300)


def test_catalog_of_fetched_files_records_their_urls_and_release(tmp_path):
    served = tmp_path / "sas"
    write_sources(served, FID, [source(40.0, 50.0, True, 4.0)], width=80, height=80)
    data = tmp_path / "data"
    with SASServer(served) as sas:
        got = celeste("--data-dir", str(data), "fetch", str(FID), "--base-url", sas.base_url,
                      "--release", "16")
        assert got.returncode == 0, got.stderr
        base = sas.base_url
    for name in ("c.fits", "c.ecsv"):
        done = celeste("--data-dir", str(data), "infer", str(FID), "--passes", "1",
                       "-o", str(tmp_path / name))
        assert done.returncode == 0, done.stderr
        prov = read_catalog(tmp_path / name).meta["provenance"]
        assert prov.release == 16, name
        assert len(prov.inputs) == 13
        manifest = Manifest(data)
        for f in prov.inputs:
            assert f.url.startswith(base + "/dr16/"), (name, f)
            assert f.url == manifest.entry(Path(f.path)).url
    assert fits.getheader(tmp_path / "c.fits", 0)["SDSSDR"] == 16


def test_files_not_fetched_or_changed_since_have_no_url_and_give_no_release(tmp_path):
    write_sources(tmp_path, FID, [source(40.0, 50.0, True, 4.0)], width=80, height=80)
    paths = sorted(p for p in tmp_path.rglob("*.fit*") if "truth" not in p.name)
    assert [f.url for f in input_files(tmp_path, paths)] == [""] * len(paths)
    manifest = Manifest(tmp_path)
    for p in paths:
        manifest.record(f"https://data.sdss.org/sas/dr17/eboss/x/{p.name}", p, "0" * 64)
    manifest.record(f"https://data.sdss.org/sas/dr17/eboss/x/{paths[0].name}", paths[0],
                    input_files(tmp_path, paths[:1])[0].sha256)
    described = input_files(tmp_path, paths)
    assert described[0].url.endswith(paths[0].name)
    assert all(f.url == "" for f in described[1:])  # bytes differ from what was recorded
    assert release_of(described) == 17
    assert release_of(described[1:]) is None


def test_an_unreadable_manifest_costs_the_urls_not_the_field(tmp_path, monkeypatch, caplog):
    # as root a chmod cannot make the manifest unreadable: stand in for the permission error
    import celestecli.infer.inputs as inputs_module

    def unreadable(data_dir):
        raise PermissionError(13, "Permission denied", str(data_dir / ".celeste-manifest.tsv"))

    frame = tmp_path / "frame-r-009000-1-0001.fits"
    frame.write_bytes(b"frame bytes")
    monkeypatch.setattr(inputs_module, "Manifest", unreadable)
    described = input_files(tmp_path, [frame])
    assert [(Path(f.path).name, f.url) for f in described] == [(frame.name, "")]
    assert "cannot read the fetch manifest" in caplog.text
