"""Crowded-field star finding: significant peaks of a zero-sum PSF filter, to split blends.

SEP with Celeste's settings finds almost nothing in a globular cluster's core (M2, 2583/2/136):
the unresolved light above threshold makes a few huge segments, and a sub-peak must hold 0.5 % of
a segment's flux to be deblended.  A star finder in the manner of DAOFIND resolves it: filter the
image with a Gaussian of the PSF's width minus its mean over a radius-2 footprint (a zero-sum
kernel ignores any smooth pedestal), and keep the local maxima (3x3) whose filtered value is at
least 5 times its noise (Poisson noise of the pixels in electrons plus the dark current).

An image is *crowded* when most of its significant peaks sit in SEP segments holding 3 or more of
them: 0.65-0.85 for the M2 field in every band, at most 0.19 on the sparse fields at hand
(3918/3/213, 4510/4/30, 3900/6/269), where the multi-peak segments are big galaxies and
saturated stars.  In a crowded image the peaks become point-like detections, replacing the SEP
objects they fall in; SEP objects without a significant peak stay.
"""

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

KERNEL_RADIUS = 2
PEAK_SNR = 5.0
CROWDED_SHARE = 0.5  # share of peaks in segments with >= CROWDED_SEGMENT_PEAKS peaks
CROWDED_SEGMENT_PEAKS = 3
CROWDED_MIN_PEAKS = 20  # so that one galaxy's knots in a small region are not a crowd


@dataclass(frozen=True)
class Peaks:
    """Significant peaks of one image: positions in its pixel frame and flux estimates."""

    x: np.ndarray
    y: np.ndarray
    flux: np.ndarray  # nanomaggies, as if each peak were an isolated point source
    peak: np.ndarray  # nanomaggies, the image's value at the peak pixel
    ix: np.ndarray  # the peak pixel
    iy: np.ndarray

    def __len__(self) -> int:
        return self.x.size


def psf_sigma(stamp: np.ndarray) -> float:
    """Width of the Gaussian with the PSF's peak fraction (robust to the PSF's extended wings)."""
    return float(1.0 / np.sqrt(2.0 * np.pi * stamp.max() / stamp.sum()))


def zero_sum_kernel(sigma: float, radius: int = KERNEL_RADIUS) -> np.ndarray:
    """A Gaussian minus its mean over the disk of ``radius`` (zero outside the disk)."""
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    disk = xx**2 + yy**2 <= radius**2 + 0.5
    gauss = np.exp(-(xx**2 + yy**2) / (2.0 * sigma**2))
    return np.where(disk, gauss - gauss[disk].mean(), 0.0)


def _vertex(centre, lo, hi):
    """Offset (clipped to +-0.5) and value of the parabola's vertex through (-1, 0, +1)."""
    curvature = lo - 2.0 * centre + hi
    safe = np.where(curvature < 0, curvature, -1.0)
    offset = np.clip(0.5 * (lo - hi) / safe, -0.5, 0.5)
    return offset, np.where(curvature < 0, -0.125 * (lo - hi) ** 2 / safe, 0.0)


def find_peaks(data: np.ndarray, mask: np.ndarray, variance: np.ndarray,
               psf_stamp: np.ndarray) -> Peaks:
    """Significant peaks of ``data`` (nanomaggies, 0 where ``mask``) with per-pixel ``variance``.

    A peak whose filter footprint touches a masked pixel or the image edge is dropped (masked
    saturated cores would otherwise ring with peaks).  Positions are refined by a parabola
    through the filtered values in x and in y; the flux is the filtered value at the vertex over
    the filter's response to the unit-flux PSF.
    """
    stamp = psf_stamp / psf_stamp.sum()
    kernel = zero_sum_kernel(psf_sigma(stamp))
    c = np.array(stamp.shape) // 2
    r = KERNEL_RADIUS
    response = float((kernel * stamp[c[0] - r:c[0] + r + 1, c[1] - r:c[1] + r + 1]).sum())
    filtered = ndimage.correlate(data.astype(np.float64), kernel, mode="constant")
    noise = np.sqrt(ndimage.correlate(variance.astype(np.float64), kernel**2, mode="constant"))
    footprint = np.ones((2 * r + 1, 2 * r + 1), dtype=bool)
    bad = ndimage.binary_dilation(mask, structure=footprint)
    bad[:r, :] = bad[-r:, :] = True
    bad[:, :r] = bad[:, -r:] = True
    is_max = filtered == ndimage.maximum_filter(filtered, size=3, mode="nearest")
    iy, ix = np.nonzero(is_max & (filtered >= PEAK_SNR * noise) & ~bad)
    centre = filtered[iy, ix]
    dx, gain_x = _vertex(centre, filtered[iy, ix - 1], filtered[iy, ix + 1])
    dy, gain_y = _vertex(centre, filtered[iy - 1, ix], filtered[iy + 1, ix])
    return Peaks(x=ix + dx, y=iy + dy, flux=(centre + gain_x + gain_y) / response,
                 peak=data[iy, ix].astype(np.float64), ix=ix, iy=iy)


def peaks_per_segment(peaks: Peaks, segmap: np.ndarray, n_segments: int) -> np.ndarray:
    """(n_segments + 1,) number of peaks in each segment; entry 0 counts peaks outside any."""
    return np.bincount(segmap[peaks.iy, peaks.ix], minlength=n_segments + 1)


def is_crowded(peaks: Peaks, segmap: np.ndarray, n_segments: int) -> bool:
    """Whether most significant peaks share their SEP segment with 2 or more others."""
    counts = peaks_per_segment(peaks, segmap, n_segments)
    counts[0] = 0
    in_crowds = int(np.count_nonzero(counts[segmap[peaks.iy, peaks.ix]] >= CROWDED_SEGMENT_PEAKS))
    return in_crowds >= CROWDED_MIN_PEAKS and in_crowds >= CROWDED_SHARE * len(peaks)


def split_segments(peaks: Peaks, segmap: np.ndarray, n_segments: int):
    """Which SEP objects the peaks replace, and each peak's share of pixels.

    Every SEP object holding a peak is replaced by its peaks; peaks outside any segment are
    kept too.  The pixels of a replaced segment go to its nearest peak (the merge picks a
    band's best detection by pixel count); a peak outside any segment counts its footprint.

    Returns
    -------
    replaced : (n_segments,) bool
    npix : (len(peaks),) pixels of each peak
    """
    segment = segmap[peaks.iy, peaks.ix]
    counts = peaks_per_segment(peaks, segmap, n_segments)
    replaced = counts[1:] > 0
    npix = np.full(len(peaks), (2 * KERNEL_RADIUS + 1) ** 2, dtype=np.int64)
    inside = np.flatnonzero(segment > 0)
    if inside.size:
        py, px = np.nonzero(segmap > 0)
        owner_segment = segmap[py, px]
        keep = replaced[owner_segment - 1]
        # Offsetting segments far apart keeps each nearest-peak query inside its segment.
        far = 1e6
        tree = cKDTree(np.column_stack([peaks.x[inside], peaks.y[inside],
                                        far * segment[inside]]))
        _, nearest = tree.query(np.column_stack([px[keep], py[keep], far * owner_segment[keep]]))
        npix[inside] = np.bincount(nearest, minlength=inside.size)
    return replaced, npix
