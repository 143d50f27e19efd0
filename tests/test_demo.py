"""The README quickstart: ``celeste infer --demo`` runs offline and scores its own field."""

import re
import subprocess
import sys

from celestecli.catalog.io import read_catalog


def test_demo_simulates_infers_and_scores(tmp_path):
    done = subprocess.run([sys.executable, "-m", "celestecli", "infer", "--demo", "--out-dir",
                           str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "sdss" / "9999" / "1" / "1" / "frame-r-009999-1-0001.fits.bz2").is_file()
    catalog = read_catalog(tmp_path / "celeste-009999-1-0001.fits")
    assert len(catalog) == 100
    matched = int(re.search(r"matched (\d+) of 100", done.stdout).group(1))
    assert matched >= 85
    position = float(re.search(r"position\s+([\d.]+)", done.stdout).group(1))
    brightness = float(re.search(r"flux_r_mag\s+([\d.]+)", done.stdout).group(1))
    assert position < 0.3 and brightness < 0.2  # pixels, magnitudes
    # linear-response SDs: 0.674 of true r log-fluxes within one (mean-field VI's: 0.391)
    within = float(re.search(r"ln r within 1 SD\s+([\d.]+)", done.stdout).group(1))
    assert 0.55 < within < 0.8
    assert "9999/1/1: 100 sources" in done.stderr


def test_demo_takes_no_field():
    done = subprocess.run([sys.executable, "-m", "celestecli", "infer", "--demo", "1/2/3"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "give no FIELD" in done.stderr


def test_demo_refuses_options_it_would_ignore(tmp_path):
    for option in (["--region", "0:100,0:100"], ["--init", "detect"], ["--sky", "local"],
                   ["--status-file", str(tmp_path / "status.jsonl")]):
        done = subprocess.run([sys.executable, "-m", "celestecli", "infer", "--demo",
                               "--out-dir", str(tmp_path / "demo"), *option],
                              capture_output=True, text=True)
        assert done.returncode == 2, done.stderr
        assert f"--demo does not take {option[0]}" in done.stderr
        assert not (tmp_path / "demo").exists()  # refused before simulating anything
