#!/bin/bash
#SBATCH -N 2
#SBATCH -t 04:00:00
#SBATCH -J celeste-infer
#SBATCH -o celeste-infer-%j.out
#
# Infer the catalogs of many fields with MPI on generic CPU nodes: RANKS_PER_NODE ranks per
# node, each with an equal share of the node's CPUs and one OpenMP thread per physical core of
# that share, rank 0 handing out fields as ranks ask for them.
#
#   sbatch -N 8 scripts/slurm-cpu.sh FIELD_LIST OUT_DIR [celeste infer options...]
#   scripts/slurm-cpu.sh --dry-run FIELD_LIST OUT_DIR ...     # print what would run
#
# FIELD_LIST has one RUN/CAMCOL/FIELD per line.  Finished fields are skipped, so resubmitting
# after a time-out does the rest.  Environment: RANKS_PER_NODE (4), CPUS_PER_NODE (logical CPUs
# of a node: Slurm's SLURM_CPUS_ON_NODE, else nproc), HW_THREADS_PER_CORE (1; 2 on nodes with
# SMT on, e.g. Perlmutter CPU: CPUS_PER_NODE=256 HW_THREADS_PER_CORE=2), CELESTE_DATA_DIR,
# PYTHON (python3).
set -euo pipefail

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
cpus_per_node=${CPUS_PER_NODE:-${SLURM_CPUS_ON_NODE:-$(nproc)}}
hw_threads=${HW_THREADS_PER_CORE:-1}
for setting in "RANKS_PER_NODE=$ranks_per_node" "CPUS_PER_NODE=$cpus_per_node" \
               "HW_THREADS_PER_CORE=$hw_threads"; do
    if ! [[ ${setting#*=} =~ ^[1-9][0-9]*$ ]]; then
        echo "$0: ${setting%%=*} must be a positive whole number, not '${setting#*=}'" >&2
        exit 2
    fi
done
# whole cores per rank (Slurm binds whole cores): one thread per core, -c counts logical CPUs
threads=$((cpus_per_node / hw_threads / ranks_per_node))
if [ "$threads" -lt 1 ]; then
    echo "$0: $ranks_per_node ranks per node need at least as many cores" \
         "($((cpus_per_node / hw_threads)))" >&2
    exit 2
fi
cpus_per_rank=$((threads * hw_threads))

export OMP_NUM_THREADS=$threads
export OMP_PLACES=cores
export OMP_PROC_BIND=close

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
