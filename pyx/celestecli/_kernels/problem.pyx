"""CyProblem: checks the flat arrays of an inference problem and exposes them to nogil kernels."""

import numpy as np

from celestecli._kernels.problem cimport NP, PSF_STRIDE, MAX_PSF, N_GAL_PROTO

# name: (dtype, rank) of every array a problem holds; shapes are checked in __init__.
_ARRAY_SPECS = {
    "pixels": (np.float32, 1), "sky": (np.float32, 1), "iota": (np.float64, 1),
    "pix_offset": (np.int64, 1), "iota_offset": (np.int64, 1),
    "nx": (np.int32, 1), "ny": (np.int32, 1), "band": (np.int32, 1),
    "params": (np.float64, 2), "pos_center": (np.float64, 2),
    "box": (np.int64, 3), "p0": (np.float64, 3), "u0": (np.float64, 3), "jac": (np.float64, 3),
    "psf": (np.float64, 4), "nbr_ptr": (np.int64, 1), "nbr_idx": (np.int64, 1),
    "gal_weight": (np.float64, 1), "gal_var": (np.float64, 1), "gal_proto": (np.int32, 1),
    "type_prior": (np.float64, 1), "logflux_mean": (np.float64, 1), "logflux_var": (np.float64, 1),
    "color_weight": (np.float64, 2), "color_mean": (np.float64, 3), "color_prec": (np.float64, 4),
    "color_logdet": (np.float64, 2), "shape_prior": (np.float64, 1),
}


def _checked(name, value):
    dtype, rank = _ARRAY_SPECS[name]
    arr = np.asarray(value)
    if arr.dtype != dtype or arr.ndim != rank or not arr.flags.c_contiguous:
        raise ValueError(f"problem array {name!r} must be a C-contiguous {rank}-d "
                         f"{np.dtype(dtype).name} array, got {arr.dtype} with shape {arr.shape}")
    if name == "params" and not arr.flags.writeable:
        raise ValueError("problem array 'params' must be writeable")
    return arr


cdef const double* _dptr(object a):
    cdef const double[::1] v = a.reshape(-1)
    return &v[0] if v.shape[0] else NULL


cdef class CyProblem:
    """Flat arrays of one field's problem (ARCHITECTURE.md 2), kept alive for the kernels.

    ``params`` is shared, not copied: the optimizer updates it in place.
    """

    def __init__(self, **arrays):
        missing = sorted(set(_ARRAY_SPECS) - set(arrays))
        extra = sorted(set(arrays) - set(_ARRAY_SPECS))
        if missing or extra:
            raise ValueError(f"problem arrays missing {missing}, unexpected {extra}")
        a = {name: _checked(name, value) for name, value in arrays.items()}
        n_img = a["nx"].shape[0]
        n_src = a["params"].shape[0]
        k = a["psf"].shape[2] if a["psf"].ndim == 4 else 0
        expect = {
            "ny": (n_img,), "band": (n_img,), "pix_offset": (n_img,), "iota_offset": (n_img,),
            "params": (n_src, NP), "pos_center": (n_src, 2), "box": (n_src, n_img, 4),
            "p0": (n_src, n_img, 2), "u0": (n_src, n_img, 2), "jac": (n_src, n_img, 4),
            "psf": (n_src, n_img, k, PSF_STRIDE), "nbr_ptr": (n_src + 1,),
            "gal_weight": (N_GAL_PROTO,), "gal_var": (N_GAL_PROTO,), "gal_proto": (N_GAL_PROTO,),
            "type_prior": (2,), "logflux_mean": (2,), "logflux_var": (2,),
            "color_weight": (2, 8), "color_mean": (2, 8, 4), "color_prec": (2, 8, 4, 4),
            "color_logdet": (2, 8), "shape_prior": (7,),
        }
        for name, shape in expect.items():
            if a[name].shape != shape:
                raise ValueError(f"problem array {name!r} has shape {a[name].shape}, expected {shape}")
        if not 1 <= k <= MAX_PSF:
            raise ValueError(f"PSF mixtures need 1..{MAX_PSF} components, got {k}")
        if a["nbr_ptr"][n_src] != a["nbr_idx"].shape[0]:
            raise ValueError("neighbour lists: nbr_ptr[-1] must equal len(nbr_idx)")
        ends_pix = a["pix_offset"] + a["nx"].astype(np.int64) * a["ny"]
        if n_img and (ends_pix.max() > a["pixels"].shape[0] or a["sky"].shape != a["pixels"].shape):
            raise ValueError("image offsets exceed the pixel arrays")
        if n_img and (a["iota_offset"] + a["nx"]).max() > a["iota"].shape[0]:
            raise ValueError("image offsets exceed the iota array")
        box = a["box"]
        nonempty = (box[..., 1] >= box[..., 0]) & (box[..., 3] >= box[..., 2])
        nx = a["nx"][None, :]
        ny = a["ny"][None, :]
        inside = ((box[..., 0] >= 0) & (box[..., 1] < nx) & (box[..., 2] >= 0) & (box[..., 3] < ny))
        if np.any(nonempty & ~inside):
            raise ValueError("a patch box lies outside its image")
        self.arrays = a
        self.pd.n_images = n_img
        self.pd.n_sources = n_src
        self.pd.n_psf = k
        cdef const float[::1] fv
        fv = a["pixels"]
        self.pd.pixels = &fv[0] if fv.shape[0] else NULL
        fv = a["sky"]
        self.pd.sky = &fv[0] if fv.shape[0] else NULL
        self.pd.iota = _dptr(a["iota"])
        cdef const long[::1] lv
        lv = a["pix_offset"]
        self.pd.pix_offset = &lv[0] if lv.shape[0] else NULL
        lv = a["iota_offset"]
        self.pd.iota_offset = &lv[0] if lv.shape[0] else NULL
        lv = a["box"].reshape(-1)
        self.pd.box = &lv[0] if lv.shape[0] else NULL
        lv = a["nbr_ptr"]
        self.pd.nbr_ptr = &lv[0]
        lv = a["nbr_idx"]
        self.pd.nbr_idx = &lv[0] if lv.shape[0] else NULL
        cdef const int[::1] iv
        iv = a["nx"]
        self.pd.nx = &iv[0] if iv.shape[0] else NULL
        iv = a["ny"]
        self.pd.ny = &iv[0] if iv.shape[0] else NULL
        iv = a["band"]
        self.pd.band = &iv[0] if iv.shape[0] else NULL
        iv = a["gal_proto"]
        self.pd.gal_proto = &iv[0]
        cdef double[::1] pv = a["params"].reshape(-1)
        self.pd.params = &pv[0] if pv.shape[0] else NULL
        self.pd.pos_center = _dptr(a["pos_center"])
        self.pd.p0 = _dptr(a["p0"])
        self.pd.u0 = _dptr(a["u0"])
        self.pd.jac = _dptr(a["jac"])
        self.pd.psf = _dptr(a["psf"])
        self.pd.gal_weight = _dptr(a["gal_weight"])
        self.pd.gal_var = _dptr(a["gal_var"])
        self.pd.type_prior = _dptr(a["type_prior"])
        self.pd.logflux_mean = _dptr(a["logflux_mean"])
        self.pd.logflux_var = _dptr(a["logflux_var"])
        self.pd.color_weight = _dptr(a["color_weight"])
        self.pd.color_mean = _dptr(a["color_mean"])
        self.pd.color_prec = _dptr(a["color_prec"])
        self.pd.color_logdet = _dptr(a["color_logdet"])
        self.pd.shape_prior = _dptr(a["shape_prior"])

    @property
    def params(self):
        """The (S, 44) bound parameters, shared with the kernels."""
        return self.arrays["params"]

    @property
    def n_sources(self):
        return self.pd.n_sources

    @property
    def n_images(self):
        return self.pd.n_images
