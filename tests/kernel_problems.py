"""Feed the reference problems of reference_problems.py to the compiled kernels."""

import numpy as np

from celestecli.infer.arrays import ImageArrays, PatchArrays, build_cy_problem


def psf_rows(psf) -> np.ndarray:
    return np.array([[w, m[0], m[1], c[0, 0], c[0, 1], c[1, 1]]
                     for w, m, c in zip(psf.weights, psf.means, psf.covs, strict=True)])


def cy_problem_from_reference(prob):
    """A CyProblem with the same images, patches and parameters as a RefProblem.

    The count maps have float32 precision in the kernel; the reference images are rebuilt
    from the float32 values so both see exactly the same data.
    """
    n_src = len(prob.patches)
    images = [ImageArrays(electrons=np.asarray(c, np.float32), sky_nmgy=np.asarray(s, np.float32),
                          iota=np.asarray(i, np.float64), band=im.band)
              for c, s, i, im in zip(prob.count_maps, prob.sky_maps, prob.iota_columns,
                                     prob.images, strict=True)]
    patches = PatchArrays(
        box=np.array([[p.box for p in row] for row in prob.patches], dtype=np.int64),
        p0=np.array([[p.p0 for p in row] for row in prob.patches]),
        u0=np.array([[p.u0 for p in row] for row in prob.patches]),
        jac=np.array([[p.J for p in row] for row in prob.patches]),
        psf=np.array([[psf_rows(p.psf) for p in row] for row in prob.patches]),
    )
    pos_center = np.array([prob.pos_center if s == prob.active else prob.params[s, :2]
                           for s in range(n_src)])
    params = np.ascontiguousarray(prob.params, dtype=np.float64).copy()
    neighbours = [[t for t in range(n_src) if t != s] for s in range(n_src)]
    return build_cy_problem(images, params, pos_center, patches, neighbours)


def reference_images_from_maps(prob):
    """RefImages whose pixel values are the float32-rounded maps the kernel reads."""
    from reference_elbo import RefImage

    out = []
    for im, c, s in zip(prob.images, prob.count_maps, prob.sky_maps, strict=True):
        x, y = np.asarray(im.x), np.asarray(im.y)
        out.append(RefImage(band=im.band, x=x, y=y,
                            counts=np.asarray(c, np.float32)[y, x].astype(np.float64),
                            iota=np.asarray(im.iota, np.float64),
                            sky=np.asarray(s, np.float32)[y, x].astype(np.float64)))
    return out
