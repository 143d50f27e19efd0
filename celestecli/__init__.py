"""celeste: Bayesian variational inference of astronomical catalogs from SDSS images."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("celestecli")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.1.0+unknown"

__all__ = ["__version__"]
