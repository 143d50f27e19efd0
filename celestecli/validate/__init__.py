"""``celeste validate``: score catalogs against ground truth with Celeste's metrics.

Modules: ``readers`` (coadd truth, Photo's photoObj, our catalogs), ``hubble`` (star-list truth
and detection scores), ``matching`` (sky and one-to-one matching), ``metrics`` (per-row errors,
filters, score table, calibration, AUC), ``scoring`` (the whole comparison), ``report`` (text
and JSON) and ``plots`` (optional matplotlib figures).
"""

from celestecli.validate.readers import Scorable, detect_kind, read_scorable
from celestecli.validate.scoring import NoMatchError, Validation, validate

__all__ = ["NoMatchError", "Scorable", "Validation", "detect_kind", "read_scorable", "validate"]
