# Flat, typed views of a field's inference problem, read by the nogil kernels.
# The Python side (celestecli/infer/problem.py) owns the numpy arrays; CyProblem in elbo.pyx
# keeps them alive and fills this struct with their data pointers.

cdef enum:
    NP = 44              # bound parameters per source
    NF = 41              # free parameters per source
    N_GAL_PROTO = 14     # galaxy prototype components (8 deV + 6 exp)
    MAX_PSF = 4          # PSF mixture components per patch, at most
    PSF_STRIDE = 6       # weight, mean x, mean y, cov xx, cov xy, cov yy

ctypedef struct Problem:
    # images (all bands and fields), concatenated
    int n_images
    const float* pixels        # electrons, NaN = excluded; image n at pix_offset[n], shape (ny, nx)
    const float* sky           # sky in nanomaggies, same layout as pixels
    const double* iota         # electrons per nanomaggy per column; image n at iota_offset[n]
    const long* pix_offset
    const long* iota_offset
    const int* nx
    const int* ny
    const int* band            # 0..4
    # sources
    int n_sources
    double* params             # (S, NP) bound parameters, updated in place by the optimizer
    const double* pos_center   # (S, 2) centre of each source's position box (world, degrees)
    const long* box            # (S, N, 4) x0, x1, y0, y1 inclusive; empty when x1 < x0
    const double* p0           # (S, N, 2) pixel (x, y) of the linearisation point
    const double* u0           # (S, N, 2) world (ra, dec) at p0
    const double* jac          # (S, N, 4) d pixel / d world, row-major [[dx/dra, dx/ddec], [dy/dra, dy/ddec]]
    int n_psf                  # PSF components per patch (K)
    const double* psf          # (S, N, K, PSF_STRIDE)
    const long* nbr_ptr        # (S + 1) CSR neighbour lists
    const long* nbr_idx
    # model constants
    const double* gal_weight   # (14,) prototype component weights (deV then exp)
    const double* gal_var      # (14,) variance multipliers
    const int* gal_proto       # (14,) 0 = deV, 1 = exp
    const double* type_prior   # (2,)
    const double* logflux_mean # (2,)
    const double* logflux_var  # (2,)
    const double* color_weight # (2, 8)
    const double* color_mean   # (2, 8, 4)
    const double* color_prec   # (2, 8, 4, 4)
    const double* color_logdet # (2, 8)
    const double* shape_prior  # (7,) galaxy shape prior: ln sigma ~ N(mean, sd); rho ~ Beta(a, b);
                               # theta ~ Beta(a, b); last: its log normaliser (see model/priors.py)

# The visited pixels of one source (its patch boxes, non-NaN), with the fixed neighbours'
# contribution precomputed: they do not change while this source is optimised.
ctypedef struct SourceWork:
    long n_pix
    long capacity
    int* pix_image
    int* pix_x
    int* pix_y
    double* counts
    double* iota
    double* e_bg               # sky + neighbours' E[G] (nanomaggies)
    double* v_bg               # neighbours' Var[G]
    long* image_start          # (n_images + 1) visited pixels are grouped by image
    double const_term          # sum of x log(iota) - lgamma(x + 1): constant in the parameters
    double* comp               # per-image component scratch, see elbo.pyx
    double* acc                # per-thread, per-image accumulators
    double* rbuf               # per-thread pixel-profile record
    int acc_threads


cdef class CyProblem:
    """Owns the numpy arrays of a problem and the Problem struct pointing into them."""
    cdef Problem pd
    cdef dict arrays
