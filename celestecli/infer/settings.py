"""What ``celeste infer`` is asked to do: the optimizer's settings (MODEL.md 5.2, Appendix A),
the initial-catalog modes, the region, and the settings of a run.

Kept free of heavy imports, so that the command line starts quickly.
"""

from dataclasses import dataclass, field

from celestecli.errors import UsageError

INIT_MODES = ("auto", "photo", "detect")  # see celestecli.infer.init_catalog
SKY_MODES = ("sdss", "local")  # see celestecli.infer.background
AUTO_PASSES = "auto"  # sweep until the sources settle: see celestecli.infer.sweep

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


@dataclass(frozen=True)
class Region:
    """An inclusive pixel box of the r frame (0-based columns x0..x1, rows y0..y1)."""

    x0: int
    x1: int
    y0: int
    y1: int

    @classmethod
    def parse(cls, text: str) -> "Region":
        """``X0:X1,Y0:Y1`` with X1/Y1 exclusive, as Python slices (e.g. 310:410,630:730)."""
        try:
            xs, ys = text.split(",")
            x0, x1 = (int(v) for v in xs.split(":"))
            y0, y1 = (int(v) for v in ys.split(":"))
        except ValueError as exc:
            raise UsageError(f"malformed region {text!r}: expected X0:X1,Y0:Y1, "
                             "e.g. 310:410,630:730") from exc
        if x1 <= x0 or y1 <= y0 or x0 < 0 or y0 < 0:
            raise UsageError(f"empty or negative region {text!r}")
        return cls(x0, x1 - 1, y0, y1 - 1)

    def box(self, margin: int = 0) -> tuple[int, int, int, int]:
        """(x0, x1, y0, y1), widened by ``margin`` pixels on every side."""
        return (self.x0 - margin, self.x1 + margin, self.y0 - margin, self.y1 + margin)

    def detection_objid_base(self) -> int:
        """Where a run over this region numbers its detections from: Y0 X0 in decimal digits
        above six for the index (310:410,630:730 gives 6300310000000, 6300310000001, ...),
        so the detections of disjoint regions of one field never share an objid."""
        return (self.y0 * 10_000 + self.x0) * 1_000_000

    def __str__(self) -> str:
        return f"{self.x0}:{self.x1 + 1},{self.y0}:{self.y1 + 1}"


@dataclass
class InferSettings:
    """What ``celeste infer`` does for each field."""

    passes: int | str = 3  # or AUTO_PASSES
    seed: int = 42
    threads: int | None = None
    init: str = "auto"
    region: Region | None = None
    sky: str = "sdss"
    trust_region: dict = field(default_factory=lambda: dict(ELBO_TRUST_REGION))
