"""Per-pixel conversion of an SDSS frame to electrons (MODEL.md 7.2).

The frame holds sky-subtracted pixels in nanomaggies; the sky is a coarse grid in data
numbers with per-column / per-row fractional grid coordinates.  For every pixel the sky is
interpolated bilinearly (standard weights, coordinates clamped to the grid, i.e. constant
extrapolation), converted to nanomaggies with the column's calibration, and the pixel becomes
``electrons = gain / calib[x] * (image + sky)``.  NaN (masked) pixels stay NaN.
"""

from cython.parallel cimport prange
from libc.math cimport floor, NAN


cdef inline double interp_sky(const float[:, ::1] allsky, double gx, double gy) noexcept nogil:
    """Bilinear interpolation of the coarse sky at grid coordinates (gx, gy), clamped.

    Clamping the coordinates (not the indices) before the cast keeps the cast defined for any
    finite input; the caller guarantees finite coordinates.
    """
    cdef Py_ssize_t ny = allsky.shape[0], nx = allsky.shape[1]
    cdef Py_ssize_t x0, y0, x1, y1
    cdef double tx, ty
    if gx < 0.0:
        gx = 0.0
    elif gx > nx - 1:
        gx = nx - 1
    if gy < 0.0:
        gy = 0.0
    elif gy > ny - 1:
        gy = ny - 1
    x0 = <Py_ssize_t>floor(gx)
    y0 = <Py_ssize_t>floor(gy)
    x1 = x0 + 1 if x0 + 1 < nx else x0
    y1 = y0 + 1 if y0 + 1 < ny else y0
    tx = gx - x0
    ty = gy - y0
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
    """Fill ``electrons`` and ``sky_nmgy`` for one frame.

    The caller guarantees finite ``xinterp``/``yinterp`` and ``calib > 0``; shapes are checked
    here because the loop runs without bounds checks.
    """
    cdef Py_ssize_t ny = image.shape[0], nx = image.shape[1]
    cdef Py_ssize_t y, x
    cdef double sky, pix
    if (calib.shape[0] != nx or xinterp.shape[0] != nx or yinterp.shape[0] != ny
            or electrons.shape[0] != ny or electrons.shape[1] != nx
            or sky_nmgy.shape[0] != ny or sky_nmgy.shape[1] != nx):
        raise ValueError("frame_to_electrons: array shapes do not match the image")
    if allsky.shape[0] < 1 or allsky.shape[1] < 1:
        raise ValueError("frame_to_electrons: empty sky grid")
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
