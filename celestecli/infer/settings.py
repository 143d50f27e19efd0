"""Optimizer settings (MODEL.md 5.2, Appendix A)."""

ELBO_TRUST_REGION = dict(
    initial_radius=1.0,
    max_radius=1e9,
    eta=0.1,
    rho_lower=0.25,
    rho_upper=0.75,
    max_iter=50,
    x_tol=1e-7,
    f_tol=1e-6,
    g_tol=1e-8,
    shrink_to_step=True,   # the fixed rejection rule; False = Celeste/Optim 0.7-0.10 behaviour
)
