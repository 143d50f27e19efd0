"""Celeste's synthetic benchmark on our simulator (VALIDATION.md section 2).

500 sources drawn from Celeste's prior, rendered with ``celeste simulate --like 2583/2/136``
(WCS, PSF, sky, gains and calibration of that real field), inferred with the photoObj (the
truth) as the starting point, and scored with ``celeste validate`` against the truth.  Prints
our mean errors next to Celeste VI's published synthetic figures.  Needs ../shared/data.
"""

import json
import tempfile
from pathlib import Path

from bench.common import celeste

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SEED = 1
CELESTE_VI = {  # VALIDATION.md section 2, Celeste VI on its synthetic benchmark
    "position": 0.133, "flux_r_mag": 0.136, "color_ug": 0.399, "color_gr": 0.148,
    "color_ri": 0.128, "color_iz": 0.169, "missed_stars": 0.113, "missed_galaxies": 0.056,
    "gal_frac_dev": 0.231, "gal_axis_ratio": 0.136, "gal_radius_px": 0.645,
    "gal_angle_deg": 4.84,
}


def main() -> None:
    if not (DATA / "sdss" / "2583" / "2" / "136").is_dir():
        print(f"skipped: {DATA} not found")
        return
    with tempfile.TemporaryDirectory() as tmp:
        sim, out = Path(tmp) / "sim", Path(tmp) / "celeste.fits"
        celeste("simulate", "--n-sources", "500", "--seed", str(SEED), "--like", "2583/2/136",
                "--data-dir", str(DATA / "sdss"), "-o", str(sim))
        run = celeste("infer", "9999/1/1", "--data-dir", str(sim), "-o", str(out))
        print(run.stderr.strip().splitlines()[-1])
        truth = sim / "9999" / "1" / "1" / "truth-009999-1-0001.fits"
        report = json.loads(celeste("validate", str(out), "--truth", str(truth), "--json").stdout)
    print(f"{'metric':16s} {'N':>4s} {'celeste (ours)':>15s} {'Celeste VI':>11s}")
    for row in report["scores"]:
        ref = CELESTE_VI.get(row["metric"])
        mean = row["catalogs"]["celeste"]["mean"]
        mark = "" if ref is None else ("  <= yes" if mean <= ref else "  <= no")
        ref_text = f"{ref:11.3f}" if ref is not None else f"{'-':>11s}"
        print(f"{row['metric']:16s} {row['n']:4d} {mean:15.4f} {ref_text}{mark}")


if __name__ == "__main__":
    main()
