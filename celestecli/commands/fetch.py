"""``celeste fetch``: download the SDSS files of fields from the SAS into the data dir."""

import logging
import time
from collections import Counter
from pathlib import Path

import click
from tqdm.contrib.logging import logging_redirect_tqdm

from celestecli.commands.options import field_arguments, resolve_fields
from celestecli.errors import AllFailed, PartialFailure
from celestecli.fields import FieldID
from celestecli.sdss import BANDS
from celestecli.sdss.download import (
    ByteProgress,
    Downloader,
    RetryPolicy,
    Transfer,
    download_all,
)
from celestecli.sdss.layout import RELEASES, field_files, sas_url
from celestecli.sdss.manifest import Manifest

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://data.sdss.org/sas"
DEFAULT_JOBS = 4  # SDSS asks bulk users to limit themselves (ENGINEERING.md 5.3)


def plan_transfers(fields: list[FieldID], bands: str, base_url: str, release: int,
                   data_dir: Path) -> list[Transfer]:
    """The files of ``fields`` in ``bands``, each once (fields of a camcol share photoField)."""
    transfers: list[Transfer] = []
    seen: set[Path] = set()
    for fid in fields:
        for f in field_files(fid, bands):
            dest = f.local_path(data_dir)
            if dest in seen:
                continue
            seen.add(dest)
            owner = f"camcol {fid.run}/{fid.camcol}" if f.kind == "photoField" else f"field {fid}"
            others = tuple(p for p in f.local_variants(data_dir) if p != dest)
            transfers.append(Transfer(sas_url(base_url, release, f), dest, owner, others))
    return transfers


def _parse_bands(_ctx, _param, value: str) -> str:
    letters = value.replace(",", "").strip()
    bad = sorted(set(letters) - set(BANDS))
    if not letters or bad:
        raise click.BadParameter(f"{value!r}: give letters of {BANDS}, e.g. 'ri'")
    return "".join(b for b in BANDS if b in letters)


def _parse_base_url(_ctx, _param, value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise click.BadParameter(f"{value!r}: expected an http:// or https:// URL")
    return value.rstrip("/")


@click.command("fetch")
@field_arguments
@click.option("--release", type=click.IntRange(min(RELEASES), max(RELEASES)), default=17,
              show_default=True, help="SDSS data release (DR8-DR12 'boss', DR13-DR17 'eboss').")
@click.option("--base-url", default=DEFAULT_BASE_URL, show_default=True,
              envvar="CELESTE_SAS_URL", callback=_parse_base_url,
              help="SAS base URL; 'drN/ROOT/...' follows it (env CELESTE_SAS_URL).")
@click.option("--bands", default=BANDS, show_default=True, callback=_parse_bands,
              help="Bands whose frame and fpM files to fetch.")
@click.option("-j", "--jobs", type=click.IntRange(1, 16), default=DEFAULT_JOBS,
              show_default=True, help="Concurrent downloads (please stay at 4 or fewer).")
@click.option("--tries", type=click.IntRange(1, 20), default=5, show_default=True,
              help="Attempts per file before giving up on it.")
@click.option("--retry-wait", type=click.FloatRange(min=0), default=1.0, show_default=True,
              envvar="CELESTE_FETCH_BACKOFF",
              help="Seconds before the first retry, doubled for each further one; a longer "
                   "Retry-After from the server wins (env CELESTE_FETCH_BACKOFF).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=60.0,
              show_default=True, help="Network timeout in seconds.")
@click.option("--dry-run", is_flag=True, help="Print the URLs (stdout) and download nothing.")
@click.pass_obj
def fetch_command(app, field_tokens, fields_file, release, base_url, bands, jobs, tries,
                  retry_wait, timeout, dry_run):
    """Download the SDSS files of each FIELD into the data dir.

    Per field: the frames and fpM masks of --bands, psField and photoObj; per camcol:
    photoField. Files land in DATA_DIR/RUN/CAMCOL/FIELD/ (photoField in DATA_DIR/RUN/CAMCOL/)
    under the names the SAS serves. Files already present and valid are skipped;
    interrupted downloads resume from their .part files. Exit 0 when every file is in
    place, 3 when some failed, 1 when all failed.
    """
    fields = resolve_fields(field_tokens, fields_file)
    transfers = plan_transfers(fields, bands, base_url, release, app.data_dir)
    if dry_run:
        for t in transfers:
            click.echo(t.url)
        return

    started = time.monotonic()
    policy = RetryPolicy(tries=tries, backoff=retry_wait)
    with logging_redirect_tqdm():
        progress = ByteProgress(len(transfers))
        try:
            downloader = Downloader(Manifest(app.data_dir), policy, progress, timeout)
            outcomes = download_all(transfers, downloader, min(jobs, len(transfers)))
        finally:
            progress.close()

    counts = Counter(o.status for o in outcomes)
    nbytes = sum(o.nbytes for o in outcomes)
    log.info("fetch: %d downloaded (%.1f MB), %d skipped, %d failed, in %.1f s",
             counts["downloaded"], nbytes / 1e6, counts["skipped"], counts["failed"],
             time.monotonic() - started)
    failures = {o.transfer.url: _explain(o.transfer, o.error.problem, release)
                for o in outcomes if o.status == "failed"}
    if len(failures) == len(outcomes):
        raise AllFailed(failures, len(outcomes))
    if failures:
        raise PartialFailure(failures, len(outcomes))


def _explain(t: Transfer, problem: str, release: int) -> str:
    if problem.startswith("HTTP 404"):
        problem += f" (not in DR{release} on this server)"
    return f"{t.label}: {problem}"
