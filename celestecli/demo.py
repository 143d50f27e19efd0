"""The embedded default: simulate the built-in SDSS-like field, infer it, score it (offline).

``celeste infer --demo`` writes a simulated field (sources drawn from Celeste's prior, Poisson
noise, SDSS file formats) under ``OUT_DIR/sdss``, infers its catalog with the photoObj (the
truth as SDSS would report it) as the starting point, writes ``OUT_DIR/celeste-009999-1-0001.fits``
and prints a short score against the truth.
"""

from dataclasses import dataclass
from pathlib import Path

from celestecli.catalog.provenance import Provenance
from celestecli.fields import FieldID
from celestecli.simulate.field_setup import builtin_setup
from celestecli.simulate.simulation import draw_truth, simulate_field
from celestecli.simulate.writer import truth_name, write_field
from celestecli.validate.metrics import SD_LEVELS, gaussian_within
from celestecli.validate.readers import read_scorable_catalog
from celestecli.validate.scoring import validate

DEMO_FIELD = FieldID(9999, 1, 1)
SUMMARY_METRICS = ("position", "flux_r_mag", "color_ug", "color_gr", "color_ri", "color_iz",
                   "missed_stars", "missed_galaxies")


@dataclass(frozen=True)
class DemoSettings:
    """Size of the demo field: a quarter of an SDSS frame with 100 sources by default."""

    width: int = 1024
    height: int = 744
    n_sources: int = 100
    seed: int = 1


def simulate_demo_field(data_dir: Path, demo: DemoSettings) -> Path:
    """Write the demo field under ``data_dir``; returns its truth catalog."""
    setup = builtin_setup(demo.width, demo.height)
    truth = draw_truth(setup, demo.n_sources, demo.seed)
    sim = simulate_field(DEMO_FIELD, setup, truth, demo.seed)
    write_field(sim, data_dir, Provenance(fields=[str(DEMO_FIELD)], seed=demo.seed), force=True)
    return data_dir / "9999" / "1" / "1" / truth_name(DEMO_FIELD)


def score_lines(catalog_path: Path, truth_path: Path) -> list[str]:
    """A few lines scoring the catalog against the truth (Celeste's metrics, 1-px matching)."""
    truth = read_scorable_catalog(truth_path, name="truth")
    ours = read_scorable_catalog(catalog_path, name="celeste")
    v = validate(truth, [ours], n_boot=0)
    by_metric = {row.metric: row for row in v.scores}
    lines = [f"matched {len(v.match)} of {len(truth)} simulated sources within 1 pixel"]
    for metric in SUMMARY_METRICS:
        if metric in by_metric:
            row = by_metric[metric]
            lines.append(f"  {metric:16s} {row.means[0]:8.3f}   (N = {row.n})")
    if "celeste" in v.auc:
        lines.append(f"  {'star/galaxy AUC':16s} {v.auc['celeste']:8.3f}")
    calibration = {row.field: row for row in v.uncertainty.get("celeste", [])}
    if "log_flux_r_nmgy" in calibration:
        row = calibration["log_flux_r_nmgy"]
        lines.append(f"  {'ln r within 1 SD':16s} {row.within[SD_LEVELS.index(1.0)]:8.3f}   "
                     f"(N = {row.n}; a calibrated posterior: {gaussian_within(1.0):.3f})")
    return lines
