"""Small simulated SDSS fields with hand-placed sources, for inference tests."""

from pathlib import Path

import numpy as np

from celestecli.catalog.provenance import Provenance
from celestecli.fields import FieldID
from celestecli.infer.problem import build_problem
from celestecli.sdss.image import load_field
from celestecli.sdss.photoobj import read_photoobj
from celestecli.simulate.field_setup import DEFAULT_CENTRE, builtin_setup
from celestecli.simulate.simulation import simulate_field
from celestecli.simulate.truth import Truth
from celestecli.simulate.writer import write_field


def source(x, y, star, log_flux_r, colors=(1.0, 0.4, 0.2, 0.1), frac_dev=0.3, axis_ratio=0.6,
           angle_rad=0.5, sigma_px=2.0):
    return dict(x=x, y=y, star=star, log_flux_r=log_flux_r, colors=colors, frac_dev=frac_dev,
                axis_ratio=axis_ratio, angle_rad=angle_rad, sigma_px=sigma_px)


def crowd(n=12, seed=0):
    """``n`` random stars and galaxies inside a 96 x 96 field, many of them overlapping."""
    rng = np.random.default_rng(seed)
    return [source(*rng.uniform(10, 86, 2), bool(rng.random() < 0.5), rng.uniform(2.5, 5.0),
                   sigma_px=rng.uniform(1, 3)) for _ in range(n)]


def field_problem(data_dir: Path, fid: FieldID):
    """The inference problem of a written field, initialised from its photoObj."""
    images = load_field(data_dir, fid)
    entries = read_photoobj(data_dir / str(fid.run) / str(fid.camcol) / str(fid.field)
                            / f"photoObj-{fid.stem}.fits")
    return build_problem(images, entries)


def write_sources(data_dir: Path, fid: FieldID, sources: list[dict], width: int = 96,
                  height: int = 96, seed: int = 0, centre_ra: float = DEFAULT_CENTRE[0]) -> Truth:
    """Render ``sources`` (pixel positions in the r frame) into a simulated field."""
    setup = builtin_setup(width=width, height=height, ra=centre_ra)
    x = np.array([s["x"] for s in sources], dtype=float)
    y = np.array([s["y"] for s in sources], dtype=float)
    ra, dec = setup.reference.wcs.all_pix2world(x, y, 0)
    truth = Truth(
        objid=np.arange(len(sources), dtype=np.int64), ra=np.asarray(ra), dec=np.asarray(dec),
        is_star=np.array([s["star"] for s in sources], dtype=bool),
        log_flux_r=np.array([s["log_flux_r"] for s in sources], dtype=float),
        colors=np.array([s["colors"] for s in sources], dtype=float).reshape(len(sources), 4),
        frac_dev=np.array([s["frac_dev"] for s in sources], dtype=float),
        axis_ratio=np.array([s["axis_ratio"] for s in sources], dtype=float),
        angle_rad=np.array([s["angle_rad"] for s in sources], dtype=float),
        sigma_px=np.array([s["sigma_px"] for s in sources], dtype=float),
        color_component=np.full(len(sources), -1, dtype=np.int64))
    write_field(simulate_field(fid, setup, truth, seed), data_dir, Provenance(), force=True)
    return truth
