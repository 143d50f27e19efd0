"""Fields one after the other in this process (``-j 1``), with a progress bar per field."""

import sys

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from celestecli.parallel.jobs import JobConfig, run_field_job


def run_serial(config: JobConfig, fields, on_outcome) -> None:
    """Run each field's job here, passing each Outcome to ``on_outcome`` as it comes."""
    with logging_redirect_tqdm():
        for fid in fields:
            with tqdm(desc=str(fid), unit="source", disable=None, leave=False,
                      file=sys.stderr) as bar:
                outcome = run_field_job(config, fid, progress=bar.update)
            on_outcome(outcome)
