"""Infer one field: load it, initialise, build the problem, sweep, and make its catalog.

The sequence of MODEL.md 5.10 for one SDSS field (optionally a pixel region of it): images of
the five bands, an initial catalog (photoObj or detection), patches and neighbours, a seeded
conflict-free schedule, sweeps of per-source trust-region Newton (celestecli.infer.sweep),
catalog rows.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from celestecli.catalog.schema import empty_catalog
from celestecli.fields import FieldID
from celestecli.infer.background import with_local_background
from celestecli.infer.detect import check_region, in_region
from celestecli.infer.init import initial_catalog, read_field_photoobj
from celestecli.infer.problem import build_problem
from celestecli.infer.settings import AUTO_PASSES, InferSettings, Region
from celestecli.infer.sweep import SETTLED_RISE, SweepResult, sweep
from celestecli.infer.to_catalog import catalog_table
from celestecli.infer.uncertainty import posterior_covariance
from celestecli.sdss import BANDS
from celestecli.sdss.image import Image, is_sky_bad, load_field
from celestecli.sdss.layout import find_local
from celestecli.threads import effective_threads

log = logging.getLogger(__name__)

R_BAND = BANDS.index("r")
I_BAND = BANDS.index("i")
# Sources this far (pixels) outside a region still enter its problem as fixed neighbours.
REGION_MARGIN = 50
# With the frame's sky, a field where at least this share of the sources is flagged BAD_SKY gets
# a hint to try --sky local (all of M2's core is flagged; simulated fields, none).
BAD_SKY_HINT_SHARE = 0.5


@dataclass
class FieldResult:
    """A field's catalog and what it took to make it."""

    fid: FieldID
    table: object  # astropy Table
    n_sources: int
    n_converged: int
    seconds: float
    threads: int
    inputs: list[Path]
    frame_size: tuple[int, int]  # (width, height) of the r frame, for merge's edge distances
    passes: int = 0  # sweeps made over the sources (--passes auto chooses)

    @property
    def core_seconds_per_source(self) -> float:
        return self.seconds * self.threads / max(self.n_sources, 1)

    def summary(self) -> str:
        return (f"{self.fid}: {self.n_sources} sources, {self.n_converged} converged, "
                f"{self.seconds:.1f} s, {self.core_seconds_per_source:.3f} core-s/source")


def field_inputs(data_dir: Path, fid: FieldID) -> list[Path]:
    """The local files a field's inference reads (for provenance)."""
    kinds = [("frame", b) for b in BANDS] + [("fpM", b) for b in BANDS]
    kinds += [("psField", None), ("photoObj", None), ("photoField", None)]
    found = (find_local(data_dir, fid, kind, band) for kind, band in kinds)
    return [p for p in found if p is not None]


def _targets(images: list[Image], entries, region: Region | None) -> np.ndarray:
    """Which sources are optimised: those inside the region (all without one).  The others,
    within REGION_MARGIN of it, stay fixed at their initial values as neighbours."""
    if region is None:
        return np.ones(len(entries), dtype=bool)
    return in_region(images[R_BAND], entries.ra, entries.dec, region.box())


def _log_settling(fid: FieldID, passes: int | str, swept: SweepResult) -> None:
    """Say whether the sweep left sources short of their optimum (crowded fields)."""
    if swept.unsettled:
        hint = (f"; a --passes above {swept.passes} sweeps longer" if passes == AUTO_PASSES
                else f"; --passes {AUTO_PASSES} sweeps until they settle")
        log.warning("%s: %d sources still rose by more than %g nats in the last of %d passes "
                    "(a crowded field?)%s", fid, swept.unsettled, SETTLED_RISE, swept.passes, hint)
    elif passes == AUTO_PASSES:
        log.info("%s: the sources settled in %d passes", fid, swept.passes)


def infer_field(data_dir: Path, fid: FieldID, settings: InferSettings,
                progress: Callable[[int], None] | None = None) -> FieldResult:
    """Run the whole inference of one field; ``progress(n)`` is told of optimised sources."""
    start = time.perf_counter()
    threads = effective_threads(settings.threads)
    with threadpool_limits(1, user_api="blas"):
        photo, photoobj_path = read_field_photoobj(data_dir, fid, settings.init)
        images = load_field(data_dir, fid, n_threads=threads)
        if settings.sky == "local":
            images = with_local_background(images)
        r_image = images[R_BAND]
        box = None
        if settings.region is not None:
            check_region(settings.region.box(), r_image)
            box = settings.region.box(REGION_MARGIN)
        base = settings.region.detection_objid_base() if settings.region is not None else 0
        entries = initial_catalog(photo, photoobj_path, fid, images, settings.init, box,
                                  detection_objid_base=base)
        targets = np.flatnonzero(_targets(images, entries, settings.region))
        if settings.region is not None:
            log.info("%s: %d of them inside the region %s; the %d around it stay fixed, as "
                     "neighbours", fid, targets.size, settings.region, len(entries) - targets.size)
        if targets.size:
            problem = build_problem(images, entries)
            no_data = problem.pixel_cost[targets] == 0
            if np.any(no_data):  # e.g. photoObj rows off the frame: nothing to fit them to
                log.warning("%s: left out %d initial sources with no unmasked pixel in any "
                            "image", fid, int(no_data.sum()))
                targets = targets[~no_data]
        if targets.size == 0:  # blank sky, nothing detected, or a source-free region
            log.warning("%s: no sources to infer; the catalog is empty", fid)
            return FieldResult(fid=fid, table=empty_catalog(0), n_sources=0, n_converged=0,
                               seconds=time.perf_counter() - start, threads=threads,
                               inputs=field_inputs(data_dir, fid),
                               frame_size=r_image.shape[::-1])
        swept = sweep(problem, targets, settings.passes, settings.seed, settings.trust_region,
                      threads, progress)
        status, iterations, elbo = swept.status, swept.iterations, swept.elbo
        _log_settling(fid, settings.passes, swept)
        params = problem.params[targets]
        ix, iy = images[I_BAND].wcs.all_world2pix(params[:, 0], params[:, 1], 0)
        bad_sky = np.array([is_sky_bad(images[I_BAND], float(x), float(y))
                            for x, y in zip(ix, iy, strict=True)], dtype=bool)
        if settings.sky == "sdss" and bad_sky.mean() >= BAD_SKY_HINT_SHARE:
            log.warning("%s: %d of %d sources flagged BAD_SKY: the i image around them is "
                        "brighter than the frame's sky (a crowded field?); --sky local adds the "
                        "smooth light they sit on to the sky", fid, int(bad_sky.sum()),
                        bad_sky.size)
        box = problem.patches.box[targets, R_BAND]
        ny, nx = r_image.shape
        at_edge = ((box[:, 0] == 0) | (box[:, 2] == 0)
                   | (box[:, 1] == nx - 1) | (box[:, 3] == ny - 1))
        covariance, linear_response = posterior_covariance(problem, targets, threads)
        table = catalog_table(params, fid, entries.objid[targets], r_image.wcs, status[targets],
                              iterations[targets], elbo[targets], bad_sky, at_edge, covariance,
                              linear_response)
    if np.any(status[targets] == 2):
        log.warning("%s: %d sources failed (non-finite ELBO); flagged NONFINITE", fid,
                    int(np.sum(status[targets] == 2)))
    seconds = time.perf_counter() - start
    return FieldResult(fid=fid, table=table, n_sources=len(targets),
                       n_converged=int(np.sum(status[targets] == 0)), seconds=seconds,
                       threads=threads, inputs=field_inputs(data_dir, fid),
                       frame_size=r_image.shape[::-1], passes=swept.passes)

