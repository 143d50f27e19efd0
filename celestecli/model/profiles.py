"""Galaxy light-profile prototypes as isotropic Gaussian mixtures (MODEL.md 2.5).

Prototype i in {DEV, EXP} has component weights eta_ij (the raw amplitudes normalised to sum to 1)
and variance multipliers nu_ij (the raw variances divided by the prototype's squared effective
radius); the component's covariance is nu_ij * Sigma(rho, phi, sigma) before PSF convolution.
"""

import numpy as np

from celestecli.model.tables import read_table

DEV, EXP = 0, 1
PROTOTYPE_NAMES = ("dev", "exp")
EFFECTIVE_RADIUS = (1.078031, 0.928896)


def _load_prototypes() -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    table = read_table("galaxy_profiles.csv")
    weights, var_mults = [], []
    for name, radius in zip(PROTOTYPE_NAMES, EFFECTIVE_RADIUS, strict=True):
        rows = table["prototype"] == name
        amplitudes = table["raw_amplitude"][rows]
        weights.append(amplitudes / amplitudes.sum())
        var_mults.append(table["raw_variance"][rows] / radius**2)
    for a in weights + var_mults:
        a.flags.writeable = False
    return tuple(weights), tuple(var_mults)


# GALAXY_WEIGHTS[i], GALAXY_VAR_MULT[i]: arrays of prototype i (8 entries for DEV, 6 for EXP).
GALAXY_WEIGHTS, GALAXY_VAR_MULT = _load_prototypes()
N_GALAXY_COMPONENTS = sum(len(w) for w in GALAXY_WEIGHTS)


def galaxy_components() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All prototype components as flat arrays for the kernels, DEV components first.

    Returns
    -------
    prototype : (14,) int64, 0 for DEV and 1 for EXP
    weight : (14,) float64, eta_ij
    var_mult : (14,) float64, nu_ij
    """
    prototype = np.concatenate([np.full(len(w), i) for i, w in enumerate(GALAXY_WEIGHTS)])
    return (prototype.astype(np.int64), np.concatenate(GALAXY_WEIGHTS),
            np.concatenate(GALAXY_VAR_MULT))
