"""Simulate a field: render the truth in every band and draw Poisson electron counts.

Pixel m of band b gets ``counts ~ Poisson(iota[x] (sky + sum_s l_sb f_s(m)))`` electrons
(MODEL.md 2.4), with the sky and iota that the readers will compute from the written files.
The frame then stores ``counts / iota - sky`` (nanomaggies, float32) on a grid of at most a
quarter electron, so that the readers' electrons are the counts to within 1/8 electron.

Random streams: ``SeedSequence(seed)`` spawns one stream for the prior draw and one for the
noise, which spawns one per band; so the same seed gives the same catalog and noise, and the
noise of a given catalog does not depend on how the catalog was made.
"""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from celestecli.fields import FieldID
from celestecli.simulate.field_setup import FieldSetup
from celestecli.simulate.prior_draw import draw_from_prior
from celestecli.simulate.render import BandRender, render_band
from celestecli.simulate.truth import Truth


def _streams(seed: int) -> tuple[np.random.SeedSequence, np.random.SeedSequence]:
    catalog, noise = np.random.SeedSequence(seed).spawn(2)
    return catalog, noise


def noise_rng(seed: int, band: int, n_bands: int = 5) -> np.random.Generator:
    """The generator of band ``band``'s noise."""
    return np.random.default_rng(_streams(seed)[1].spawn(n_bands)[band])


def draw_truth(setup: FieldSetup, n_sources: int, seed: int) -> Truth:
    """``n_sources`` drawn from the prior over the setup's r frame."""
    ref = setup.reference
    return draw_from_prior(n_sources, np.random.default_rng(_streams(seed)[0]), ref.wcs,
                           ref.shape)


@dataclass
class SimulatedField:
    """A rendered, noisy field in memory, ready to be written."""

    fid: FieldID
    setup: FieldSetup
    truth: Truth
    seed: int
    renders: list[BandRender]  # u..z
    counts: list[np.ndarray]  # u..z, (ny, nx) int64 electrons

    @property
    def listed_truth(self) -> Truth:
        """The sources on the frame: those the photoObj and the truth catalog list, as a
        field's photoObj lists only its own objects (all are rendered: light from sources
        just off the frame reaches it, as in real frames)."""
        return self.truth.subset(self.setup.on_frame(self.truth.ra, self.truth.dec))

    def quantum(self, band: int) -> float:
        """Step (nMgy, a power of two) of the frame's pixel values: at most 1/4 electron."""
        return float(2.0 ** np.floor(np.log2(0.25 / self.renders[band].iota.max())))

    def frame_image(self, band: int) -> np.ndarray:
        """The frame's HDU 0: calibrated, sky-subtracted image in nanomaggies (float32).

        ``counts / iota - sky`` rounded to a multiple of ``quantum(band)``, as SDSS truncates
        its frames' floats: the readers' electrons then lie within 1/8 electron of the counts
        (rounding gives them back exactly), and the files compress as well as SDSS's.
        """
        r = self.renders[band]
        q = self.quantum(band)
        image = self.counts[band] / r.iota[None, :] - r.sky
        return (np.round(image / q) * q).astype(np.float32)


def simulate_field(fid: FieldID, setup: FieldSetup, truth: Truth, seed: int,
                   n_threads: int = 1) -> SimulatedField:
    """Render ``truth`` into every band of ``setup`` and draw the noise from ``seed``."""
    def one(band):
        render = render_band(setup.bands[band], truth)
        counts = noise_rng(seed, band, len(setup.bands)).poisson(render.expected_electrons)
        return render, counts

    # One BLAS thread: the PSF fits' small SVDs are many times slower with several (OpenBLAS
    # threads on matrices of 2601 x 12), and the bands already run in parallel.
    with (threadpool_limits(limits=1, user_api="blas"),
          ThreadPoolExecutor(max_workers=max(1, min(n_threads, len(setup.bands)))) as pool):
        results = list(pool.map(one, range(len(setup.bands))))
    return SimulatedField(fid, setup, truth, seed, [r for r, _ in results],
                          [c for _, c in results])
