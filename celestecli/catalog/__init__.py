"""Catalogs: the column schema, provenance, and atomic FITS/ECSV/CSV reading and writing.

The inference code builds an astropy Table with the schema columns (``empty_catalog(n)``),
fills it, and calls ``write_catalog(table, path, provenance=Provenance(...))``.
"""

from celestecli.catalog.atomic import OutputError, atomic_write
from celestecli.catalog.io import (
    FORMATS,
    format_from_path,
    read_catalog,
    read_table,
    write_catalog,
)
from celestecli.catalog.provenance import InputFile, Provenance, sha256_file
from celestecli.catalog.schema import (
    BANDS,
    COLORS,
    COLUMN_NAMES,
    FLAG_BAD_SKY,
    FLAG_BITS,
    FLAG_EDGE,
    FLAG_ITER_LIMIT,
    FLAG_MEAN_FIELD_SD,
    FLAG_NONFINITE,
    SCHEMA,
    SCHEMA_BY_NAME,
    SCORED_COLUMNS,
    STDERR_COLUMNS,
    ColumnSpec,
    empty_catalog,
    validate_columns,
)

__all__ = [
    "BANDS", "COLORS", "COLUMN_NAMES", "FLAG_BAD_SKY", "FLAG_BITS", "FLAG_EDGE",
    "FLAG_ITER_LIMIT", "FLAG_MEAN_FIELD_SD", "FLAG_NONFINITE", "FORMATS", "SCHEMA",
    "SCHEMA_BY_NAME", "SCORED_COLUMNS", "STDERR_COLUMNS", "ColumnSpec", "InputFile",
    "OutputError", "Provenance", "atomic_write", "empty_catalog", "format_from_path",
    "read_catalog", "read_table", "sha256_file", "validate_columns", "write_catalog",
]
