"""Session fixtures shared by several test files."""

from field_runs import pool_run, sim_data, single_catalogs  # noqa: F401
