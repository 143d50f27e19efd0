#!/bin/bash
# Bring the catalogs of a list of fields up to date; meant for cron (see README, "Cron").
#
#   scripts/cron-example.sh FIELD_LIST OUT_DIR [celeste infer options...]
#
# Downloads the files that are missing, then infers every field whose catalog is missing or out
# of date (new inputs, settings or celeste code).  Safe to overlap with itself or any other
# celeste run on OUT_DIR: a field being processed elsewhere is left to that run, and one that an
# earlier run did not finish (killed, time-out, failure) is done now.  A line per field goes to
# OUT_DIR/status.jsonl.  Exit 0 when every field is up to date, 3 when some failed (1 when
# all did), else fetch's status when only downloads failed.
# Environment: CELESTE_DATA_DIR (the SDSS files; default ./sdss), CELESTE_JOBS (worker
# processes, default 2), CELESTE_THREADS (threads per worker, default 1).
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 FIELD_LIST OUT_DIR [celeste infer options...]" >&2
    exit 2
fi
field_list=$1
out_dir=$2
shift 2

data_dir=${CELESTE_DATA_DIR:-sdss}
mkdir -p "$data_dir" "$out_dir"

# overlapping runs share the downloads: each file is fetched once, under a lock.  A field
# whose files cannot all be fetched (or a server that cannot be reached) must not hold up the
# others: infer runs on whatever is present and fails only the fields that lack files.
fetch_status=0
celeste -q --data-dir "$data_dir" fetch --fields "$field_list" || fetch_status=$?
infer_status=0
celeste -q --data-dir "$data_dir" infer --fields "$field_list" --out-dir "$out_dir" \
    -j "${CELESTE_JOBS:-2}" --threads "${CELESTE_THREADS:-1}" \
    --status-file "$out_dir/status.jsonl" "$@" || infer_status=$?
if [ "$infer_status" -ne 0 ]; then
    exit "$infer_status"
fi
exit "$fetch_status"
