"""Celeste's synthetic benchmark on our simulator (VALIDATION.md section 2).

500 sources drawn from Celeste's prior, rendered with ``celeste simulate --like 2583/2/136``
(WCS, PSF, sky, gains and calibration of that real field), inferred with the photoObj (the
truth) as the starting point, and scored with ``celeste validate`` against the truth.  Seed 1
is the single draw Celeste's experiment corresponds to; one draw is noisy (missed stars rest on
about 140 stars), so seeds 2-5 are run too and the median of the five is printed beside it,
next to Celeste VI's published synthetic figures, and so is the share of true values within
one posterior SD (Celeste VI: 0.31 of log r fluxes; a calibrated posterior: 0.683).  Needs
../shared/data.
"""

import json
import statistics
import tempfile
from pathlib import Path

from bench.common import DATA, celeste

SEEDS = (1, 2, 3, 4, 5)
CELESTE_VI = {  # VALIDATION.md section 2, Celeste VI on its synthetic benchmark
    "position": 0.133, "flux_r_mag": 0.136, "color_ug": 0.399, "color_gr": 0.148,
    "color_ri": 0.128, "color_iz": 0.169, "missed_stars": 0.113, "missed_galaxies": 0.056,
    "gal_frac_dev": 0.231, "gal_axis_ratio": 0.136, "gal_radius_px": 0.645,
    "gal_angle_deg": 4.84,
}
CELESTE_VI_WITHIN_1_SD = {"log_flux_r_nmgy": 0.31}
CALIBRATED_WITHIN_1_SD = 0.683


def run_seed(seed: int, workdir: Path) -> dict:
    """Simulate, infer and score one draw; returns validate's JSON report."""
    sim, out = workdir / f"sim{seed}", workdir / f"celeste{seed}.fits"
    celeste("simulate", "--n-sources", "500", "--seed", str(seed), "--like", "2583/2/136",
            "--data-dir", str(DATA / "sdss"), "-o", str(sim))
    run = celeste("infer", "9999/1/1", "--data-dir", str(sim), "-o", str(out))
    print(f"seed {seed}: {run.stderr.strip().splitlines()[-1]}", flush=True)
    truth = sim / "9999" / "1" / "1" / "truth-009999-1-0001.fits"
    return json.loads(celeste("validate", str(out), "--truth", str(truth), "--json",
                              "--bootstrap", "0").stdout)


def main() -> None:
    if not (DATA / "sdss" / "2583" / "2" / "136").is_dir():
        print(f"skipped: {DATA} not found")
        return
    with tempfile.TemporaryDirectory() as tmp:
        reports = [run_seed(seed, Path(tmp)) for seed in SEEDS]
    print_scores([report["scores"] for report in reports])
    print_calibration([next(iter(report["uncertainty"].values())) for report in reports])


def print_scores(runs: list[list[dict]]) -> None:
    """Mean errors of seed 1 and the median seed beside Celeste VI's."""
    print(f"{'metric':16s} {'N':>4s} {'seed 1':>8s} {'median':>8s} {'Celeste VI':>11s}"
          "   at or below (seed 1, median)")
    for row in runs[0]:
        metric = row["metric"]
        means = [next(iter(r["catalogs"].values()))["mean"]
                 for run in runs for r in run if r["metric"] == metric]
        first, median = means[0], statistics.median(means)
        ref = CELESTE_VI.get(metric)
        if ref is None:
            tail = f"{'-':>11s}"
        else:
            verdict = ", ".join("yes" if v <= ref else "no" for v in (first, median))
            tail = f"{ref:11.3f}   {verdict}"
        print(f"{metric:16s} {row['n']:4d} {first:8.4f} {median:8.4f} {tail}")


def print_calibration(runs: list[list[dict]]) -> None:
    """Shares of true values within one posterior SD, seed 1 and the median seed."""
    print(f"\nwithin 1 posterior SD of the truth (calibrated {CALIBRATED_WITHIN_1_SD})")
    print(f"{'quantity':16s} {'N':>4s} {'seed 1':>8s} {'median':>8s} {'Celeste VI':>11s}")
    for row in runs[0]:
        shares = [r["within_1_sd"] for run in runs for r in run if r["field"] == row["field"]]
        ref = CELESTE_VI_WITHIN_1_SD.get(row["field"])
        tail = f"{ref:11.2f}" if ref is not None else f"{'-':>11s}"
        print(f"{row['field']:16s} {row['n']:4d} {shares[0]:8.3f} "
              f"{statistics.median(shares):8.3f} {tail}")


if __name__ == "__main__":
    main()
