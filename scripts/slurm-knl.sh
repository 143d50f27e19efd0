#!/bin/bash
#SBATCH -N 4
#SBATCH -C knl
#SBATCH -q regular
#SBATCH -t 04:00:00
#SBATCH -J celeste-infer
#SBATCH -o celeste-infer-%j.out
#
# Infer the catalogs of many fields with MPI on Knights Landing nodes (68 cores x 4 hardware
# threads = 272 logical CPUs per node): RANKS_PER_NODE ranks per node, one OpenMP thread per
# physical core of each rank, rank 0 handing out fields as ranks ask for them.
#
#   sbatch -N 16 scripts/slurm-knl.sh FIELD_LIST OUT_DIR [celeste infer options...]
#   scripts/slurm-knl.sh --dry-run FIELD_LIST OUT_DIR ...     # print what would run
#
# FIELD_LIST has one RUN/CAMCOL/FIELD per line.  Finished fields are skipped, so resubmitting
# after a time-out does the rest.  Environment: RANKS_PER_NODE (4), CELESTE_DATA_DIR (the SDSS
# files), PYTHON (python3: the one with celeste and mpi4py installed).
set -euo pipefail

CORES_PER_NODE=68
LOGICAL_CPUS_PER_NODE=272

dry_run=0
if [ "${1:-}" = "--dry-run" ]; then
    dry_run=1
    shift
fi
if [ $# -lt 2 ]; then
    echo "usage: $0 [--dry-run] FIELD_LIST OUT_DIR [celeste infer options...]" >&2
    exit 2
fi
field_list=$1
out_dir=$2
shift 2
if [ ! -r "$field_list" ]; then
    echo "$0: cannot read the field list $field_list" >&2
    exit 2
fi

nodes=${SLURM_JOB_NUM_NODES:-1}
ranks_per_node=${RANKS_PER_NODE:-4}
if ! [[ $ranks_per_node =~ ^[1-9][0-9]*$ ]] || [ "$ranks_per_node" -gt "$CORES_PER_NODE" ]; then
    echo "$0: RANKS_PER_NODE must be a whole number from 1 to $CORES_PER_NODE, not '$ranks_per_node'" >&2
    exit 2
fi
# whole cores per rank (Slurm binds whole cores): one thread per core, -c counts logical CPUs
threads=$((CORES_PER_NODE / ranks_per_node))
cpus_per_rank=$((threads * LOGICAL_CPUS_PER_NODE / CORES_PER_NODE))

export OMP_NUM_THREADS=$threads
export OMP_PLACES=cores
export OMP_PROC_BIND=spread

command=(srun -n $((nodes * ranks_per_node)) -c "$cpus_per_rank" --cpu-bind=cores
         "${PYTHON:-python3}" -m celestecli.parallel.mpi --threads "$threads"
         --fields "$field_list" --out-dir "$out_dir" --status-file "$out_dir/status.jsonl" "$@")

if [ "$dry_run" = 1 ]; then
    echo "OMP_NUM_THREADS=$OMP_NUM_THREADS OMP_PLACES=$OMP_PLACES OMP_PROC_BIND=$OMP_PROC_BIND"
    printf '%q ' "${command[@]}"
    echo
    exit 0
fi
mkdir -p "$out_dir"
exec "${command[@]}"
