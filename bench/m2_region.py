"""Real data: the 100 x 100 Hubble region of the globular cluster M2 (field 2583/2/136).

Runs ``celeste infer 2583/2/136 --region 310:410,630:730`` on the files in ../shared/data/sdss
and scores its stars against the Hubble ACS star list (1-pixel one-to-one pairing, r brighter
than 21), next to the same run with ``--sky local`` (the cluster's unresolved light added to the
sky), with ``--sky local --passes auto`` (swept until the sources settle: ``settled``) and SEP
run alone (MODEL.md 7.6 settings) on the same r-band pixels.  Then, for the default and the
settled run, the share of the paired stars' Hubble positions and r fluxes within one posterior
SD of ours: what the SDs are worth where the model misses much (crowding, the cluster's light).
"""

import json
import tempfile
from pathlib import Path

import numpy as np
from astropy.table import Table

from bench.common import DATA, celeste
from celestecli.catalog.io import read_catalog, write_catalog
from celestecli.catalog.schema import empty_catalog
from celestecli.fields import FieldID
from celestecli.infer.detect import sep_only_catalog
from celestecli.sdss.image import load_field
from celestecli.validate.hubble import locate_frame, read_hubble_truth
from celestecli.validate.matching import one_to_one
from celestecli.validate.metrics import SD_LEVELS, uncertainty

FIELD = FieldID(2583, 2, 136)
REGION = "310:410,630:730"
BOX = (310, 409, 630, 729)


def sep_catalog(path: Path) -> int:
    """Write SEP's r-band detections in the region as a minimal catalog; return their count."""
    images = load_field(DATA / "sdss", FIELD, bands="r")
    entries = sep_only_catalog(images, BOX)
    table = empty_catalog(len(entries))
    table["objid"] = entries.objid
    table["ra"], table["dec"] = entries.ra, entries.dec
    table["is_star"] = 1.0
    flux = np.maximum(entries.star_flux[:, 2], 1e-3)
    table["flux_r"] = table["flux_r_nmgy"] = flux
    write_catalog(table, path)
    return len(entries)


def print_calibration(catalog_path: Path, truth_path: Path, max_mag: float = 21.0) -> None:
    """Shares of paired Hubble stars (1-px one-to-one, r < max_mag) whose position and ln r
    flux lie within one of the catalog's posterior SDs."""
    truth = read_hubble_truth(truth_path, locate_frame(DATA / "sdss", truth_path))
    catalog = read_catalog(catalog_path)
    px, py = truth.wcs.wcs_world2pix(catalog["ra"], catalog["dec"], 0)
    ti, pj = one_to_one(np.column_stack([truth.x, truth.y]), np.column_stack([px, py]), 1.0)
    bright = truth.mag_r[ti] < max_mag
    ti, pj = ti[bright], pj[bright]
    truth_rows = Table({"ra": truth.ra[ti], "dec": truth.dec[ti],
                        "flux_r_nmgy": 10.0 ** ((22.5 - truth.mag_r[ti]) / 2.5)})
    print(f"paired stars with r < {max_mag:g} within 1 posterior SD (calibrated 0.683):")
    for row in uncertainty(truth_rows, catalog[pj]):
        if row.n:
            print(f"  {row.field:16s} N {row.n:4d}  {row.within[SD_LEVELS.index(1.0)]:.3f}")


def main() -> None:
    if not (DATA / "sdss" / "2583").is_dir():
        print(f"skipped: {DATA} not found")
        return
    with tempfile.TemporaryDirectory() as tmp:
        ours, local, settled, sep = (Path(tmp) / f"{name}.fits"
                                     for name in ("celeste", "local", "settled", "sep"))
        for path, sky, passes in ((ours, "sdss", "3"), (local, "local", "3"),
                                  (settled, "local", "auto")):
            run = celeste("infer", str(FIELD), "--data-dir", str(DATA / "sdss"), "--region",
                          REGION, "--sky", sky, "--passes", passes, "-o", str(path))
            print(f"--sky {sky} --passes {passes}: {run.stderr.strip().splitlines()[-1]}")
        n_sep = sep_catalog(sep)
        print(f"sep alone: {n_sep} detections in the region")
        truth = DATA / "truth" / "true_hubble_m2.npz"
        result = celeste("validate", str(ours), "--truth", str(truth),
                         "--data-dir", str(DATA / "sdss"), "--compare", str(local),
                         "--compare", str(settled), "--compare", str(sep),
                         "--max-mag", "21", "--json")
        report = json.loads(result.stdout)
        print("stars with r < 21, one-to-one pairing within 1 pixel:")
        for entry in report["detection"]:
            o = entry["overall"]
            print(f"  {entry['catalog']['name']:8s} truth {o['n_true']:4d}  "
                  f"found {o['n_true_found']:4d}  recall {o['recall']:.3f}  "
                  f"catalog {o['n_pred']:4d}  precision {o['precision']:.3f}  F1 {o['f1']:.3f}")
        for path in (ours, settled):
            print(f"{path.stem}: ", end="")
            print_calibration(path, truth)


if __name__ == "__main__":
    main()
