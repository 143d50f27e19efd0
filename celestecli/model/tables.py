"""Read the CSV tables of model constants shipped in the ``celestecli.data`` package."""

import csv
import io
from importlib.resources import files

import numpy as np


def read_table(name: str) -> dict[str, np.ndarray]:
    """Columns of ``celestecli.data/<name>`` by header name.

    Columns whose every entry parses as a float become float64 arrays, the others string arrays.
    """
    text = files("celestecli.data").joinpath(name).read_text(encoding="utf-8")
    header, *body = [row for row in csv.reader(io.StringIO(text)) if row]
    if not body or any(len(row) != len(header) for row in body):
        raise ValueError(f"celestecli.data/{name}: every row must have {len(header)} fields")
    columns = {}
    for j, column in enumerate(header):
        values = [row[j].strip() for row in body]
        try:
            columns[column] = np.array([float(v) for v in values])
        except ValueError:
            columns[column] = np.array(values)
    return columns
