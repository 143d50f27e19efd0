"""Layout of one source's 44 variational parameters ("bound" parameterization, MODEL.md 3.2).

0-based indices.  Type index i: 0 = star, 1 = galaxy.  Colour index j: 0..3 = (ug, gr, ri, iz).

    0, 1    pos: RA, Dec (degrees)
    2       theta: gal_frac_dev (weight of the de Vaucouleurs prototype)
    3       rho: gal_axis_ratio (minor / major)
    4       phi: gal_angle (radians, pixel frame: from +x towards +y)
    5       sigma: gal_radius_px (major-axis scale, pixels)
    6, 7    gamma[i]: mean of ln r_s given type i
    8, 9    zeta[i]: variance of ln r_s given type i
    10-13   beta[j, star]: colour means          14-17 beta[j, gal]
    18-21   lambda[j, star]: colour variances    22-25 lambda[j, gal]
    26, 27  chi[i]: P(star), P(galaxy)
    28-35   kappa[d, star]: colour-component responsibilities   36-43 kappa[d, gal]

The free (unconstrained) vector has 41 entries: the 26 box-constrained scalars in the order
above (indices 0..25), then the simplexes chi (1 free), kappa_star (7), kappa_gal (7).
"""

import numpy as np

N_PARAMS = 44
N_FREE = 41
N_TYPES = 2
N_COLORS = 4
N_COLOR_COMPONENTS = 8

POS = slice(0, 2)
THETA, RHO, PHI, SIGMA = 2, 3, 4, 5
GAMMA = (6, 7)
ZETA = (8, 9)
BETA = ((10, 11, 12, 13), (14, 15, 16, 17))
LAMBDA = ((18, 19, 20, 21), (22, 23, 24, 25))
CHI = (26, 27)
KAPPA = (tuple(range(28, 36)), tuple(range(36, 44)))

# Box bounds of entries 2..25 (positions get a box around their initial value, POS_HALF_WIDTH).
POS_HALF_WIDTH_DEG = 1e-4
BOX_LOWER = np.array([0.01, 0.01, -10.0, 0.1, -1.0, -1.0, 1e-4, 1e-4]
                     + [-10.0] * 8 + [1e-4] * 8)
BOX_UPPER = np.array([0.99, 0.99, 10.0, 70.0, 10.0, 10.0, 0.1, 0.1]
                     + [10.0] * 8 + [1.0] * 8)
CHI_LOWER = 0.005
KAPPA_LOWER = 0.01 / N_COLOR_COMPONENTS


def generic_init(ra: float, dec: float) -> np.ndarray:
    """The generic initial value of a target source at (ra, dec) (MODEL.md 3.2, last column)."""
    p = np.empty(N_PARAMS)
    p[POS] = ra, dec
    p[THETA], p[RHO], p[PHI], p[SIGMA] = 0.5, 0.5, 0.0, 1.0
    p[list(GAMMA)] = np.log(2.0)
    p[list(ZETA)] = 1e-3
    p[list(BETA[0] + BETA[1])] = 0.0
    p[list(LAMBDA[0] + LAMBDA[1])] = 1e-2
    p[list(CHI)] = 0.5
    p[list(KAPPA[0] + KAPPA[1])] = 1.0 / N_COLOR_COMPONENTS
    return p


def band_coefficients() -> np.ndarray:
    """I_b(j): ln flux_b = ln r + sum_j I[b, j] c_j for bands u..z (5 x 4), MODEL.md 2.1."""
    coef = np.zeros((5, N_COLORS))
    for b in range(5):
        for j in range(N_COLORS):
            if b > j >= 2:
                coef[b, j] = 1.0
            elif b <= j < 2:
                coef[b, j] = -1.0
    return coef
