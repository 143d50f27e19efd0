"""``celeste simulate``: render a catalog into SDSS-format field files (ARCHITECTURE.md 1).

Modules: ``field_setup`` (WCS, PSF, sky, calibration, gains: built-in or copied from a real
field), ``prior_draw`` (a catalog from Celeste's prior), ``truth`` (the true catalog and its
conversions), ``render`` (each source's expected light, from the model's formulas),
``simulation`` (Poisson noise in electrons) and ``writer`` (the files, written atomically).
"""
