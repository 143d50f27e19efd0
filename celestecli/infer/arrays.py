"""Pack images, patches and parameters into the flat arrays the kernels read (CyProblem).

This is the Python/Cython boundary of ARCHITECTURE.md 2: everything here is numpy arrays of
fixed dtype; the kernels never touch a Python object.
"""

from dataclasses import dataclass

import numpy as np

from celestecli._kernels.problem import CyProblem
from celestecli.model import priors, profiles
from celestecli.model.params import N_PARAMS


@dataclass
class ImageArrays:
    """One image as the kernels see it."""

    electrons: np.ndarray  # (ny, nx) float32, NaN = excluded
    sky_nmgy: np.ndarray  # (ny, nx) float32
    iota: np.ndarray  # (nx,) float64 electrons per nanomaggy
    band: int  # 0..4


@dataclass
class PatchArrays:
    """Per (source, image) patch geometry: arrays of shape (S, N, ...)."""

    box: np.ndarray  # (S, N, 4) int64: x0, x1, y0, y1 inclusive (empty if x1 < x0)
    p0: np.ndarray  # (S, N, 2) pixel (x, y) of the linearisation point
    u0: np.ndarray  # (S, N, 2) world (ra, dec) at p0
    jac: np.ndarray  # (S, N, 2, 2) d pixel / d world
    psf: np.ndarray  # (S, N, K, 6): weight, mean x, mean y, cov xx, cov xy, cov yy


def model_constants() -> dict:
    """Prior and galaxy-profile constants in the layout CyProblem expects."""
    proto, weight, var = profiles.galaxy_components()
    return dict(
        gal_weight=np.ascontiguousarray(weight, dtype=np.float64),
        gal_var=np.ascontiguousarray(var, dtype=np.float64),
        gal_proto=np.ascontiguousarray(proto, dtype=np.int32),
        type_prior=np.array(priors.TYPE_PRIOR, dtype=np.float64),
        logflux_mean=np.array(priors.LOGFLUX_MEAN, dtype=np.float64),
        logflux_var=np.array(priors.LOGFLUX_VAR, dtype=np.float64),
        color_weight=np.array(priors.COLOR_WEIGHTS, dtype=np.float64),
        color_mean=np.array(priors.COLOR_MEANS, dtype=np.float64),
        color_prec=np.array(priors.COLOR_PRECISIONS, dtype=np.float64),
        color_logdet=np.array(priors.COLOR_LOGDETS, dtype=np.float64),
        shape_prior=priors.shape_prior_constants(),
    )


def neighbour_csr(neighbours: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """CSR arrays (ptr, idx) of per-source neighbour lists."""
    ptr = np.zeros(len(neighbours) + 1, dtype=np.int64)
    ptr[1:] = np.cumsum([len(n) for n in neighbours])
    idx = np.array([j for n in neighbours for j in n], dtype=np.int64)
    return ptr, idx


def build_cy_problem(images: list[ImageArrays], params: np.ndarray, pos_center: np.ndarray,
                     patches: PatchArrays, neighbours: list[list[int]]) -> CyProblem:
    """A CyProblem over ``images`` for sources with bound ``params`` (S, 44), shared in place."""
    if params.ndim != 2 or params.shape[1] != N_PARAMS:
        raise ValueError(f"params must have shape (S, {N_PARAMS}), got {params.shape}")
    nx = np.array([im.electrons.shape[1] for im in images], dtype=np.int32)
    ny = np.array([im.electrons.shape[0] for im in images], dtype=np.int32)
    sizes = nx.astype(np.int64) * ny
    pix_offset = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    iota_offset = np.concatenate([[0], np.cumsum(nx)[:-1]]).astype(np.int64)
    ptr, idx = neighbour_csr(neighbours)
    n_src = params.shape[0]
    return CyProblem(
        pixels=np.concatenate([im.electrons.ravel() for im in images]).astype(np.float32),
        sky=np.concatenate([im.sky_nmgy.ravel() for im in images]).astype(np.float32),
        iota=np.concatenate([im.iota for im in images]).astype(np.float64),
        pix_offset=pix_offset, iota_offset=iota_offset, nx=nx, ny=ny,
        band=np.array([im.band for im in images], dtype=np.int32),
        params=params,
        pos_center=np.ascontiguousarray(pos_center, dtype=np.float64).reshape(n_src, 2),
        box=np.ascontiguousarray(patches.box, dtype=np.int64),
        p0=np.ascontiguousarray(patches.p0, dtype=np.float64),
        u0=np.ascontiguousarray(patches.u0, dtype=np.float64),
        jac=np.ascontiguousarray(patches.jac, dtype=np.float64).reshape(n_src, len(images), 4),
        psf=np.ascontiguousarray(patches.psf, dtype=np.float64),
        nbr_ptr=ptr, nbr_idx=idx,
        **model_constants(),
    )
