"""Per-pixel conversion of an SDSS frame to electrons (MODEL.md 7.2).

The frame holds sky-subtracted pixels in nanomaggies; the sky is a coarse grid in data
numbers with per-column / per-row fractional grid coordinates.  For every pixel the sky is
interpolated bilinearly (standard weights, indices clamped to the grid), converted to
nanomaggies with the column's calibration, and the pixel becomes
``electrons = gain / calib[x] * (image + sky)``.  NaN (masked) pixels stay NaN.
"""

from cython.parallel cimport prange
from libc.math cimport floor, NAN

from celestecli._kernels._openmp cimport omp_get_max_threads


cdef inline double interp_sky(const float[:, ::1] allsky, double gx, double gy) noexcept nogil:
    """Bilinear interpolation of the coarse sky at grid coordinates (gx, gy), clamped."""
    cdef Py_ssize_t ny = allsky.shape[0], nx = allsky.shape[1]
    cdef double fx0 = floor(gx), fy0 = floor(gy)
    cdef double tx = gx - fx0, ty = gy - fy0
    cdef Py_ssize_t x0 = <Py_ssize_t>fx0, y0 = <Py_ssize_t>fy0
    cdef Py_ssize_t x1 = x0 + 1, y1 = y0 + 1
    # Constant extrapolation outside the grid: clamp both corners to the edge.
    if x0 < 0:
        x0 = 0
        x1 = 0
    if x1 > nx - 1:
        x1 = nx - 1
        if x0 > nx - 1:
            x0 = nx - 1
    if y0 < 0:
        y0 = 0
        y1 = 0
    if y1 > ny - 1:
        y1 = ny - 1
        if y0 > ny - 1:
            y0 = ny - 1
    return ((1.0 - ty) * ((1.0 - tx) * allsky[y0, x0] + tx * allsky[y0, x1])
            + ty * ((1.0 - tx) * allsky[y1, x0] + tx * allsky[y1, x1]))


def frame_to_electrons(const float[:, ::1] image,    # IN  (ny, nx) nanomaggies, NaN = masked
                       const double[::1] calib,      # IN  (nx,) nanomaggies per data number
                       const float[:, ::1] allsky,   # IN  coarse sky grid, data numbers
                       const double[::1] xinterp,    # IN  (nx,) grid x coordinate per column
                       const double[::1] yinterp,    # IN  (ny,) grid y coordinate per row
                       double gain,
                       float[:, ::1] electrons,      # OUT (ny, nx) electrons
                       float[:, ::1] sky_nmgy,       # OUT (ny, nx) sky in nanomaggies
                       int n_threads):
    """Fill ``electrons`` and ``sky_nmgy`` for one frame (shapes checked by the caller)."""
    cdef Py_ssize_t ny = image.shape[0], nx = image.shape[1]
    cdef Py_ssize_t y, x
    cdef double sky, pix
    if n_threads < 1:
        n_threads = 1
    for y in prange(ny, nogil=True, schedule="static", num_threads=n_threads):
        for x in range(nx):
            sky = interp_sky(allsky, xinterp[x], yinterp[y]) * calib[x]
            sky_nmgy[y, x] = <float>sky
            pix = image[y, x]
            if pix != pix:
                electrons[y, x] = NAN
            else:
                electrons[y, x] = <float>(gain / calib[x] * (pix + sky))
