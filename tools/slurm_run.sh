#!/usr/bin/env bash
# What tools/slurm_train.sh and tools/slurm_test.sh share: run tools/TOOL on
# a Slurm cluster, one task per GPU,
#   tools/slurm_run.sh PARTITION JOB_NAME TOOL [TOOL arguments]
# GPUS: tasks in all (default 8); GPUS_PER_NODE: tasks per node (default
# 8); CPUS_PER_TASK (default 5); SRUN_ARGS: extra srun options; GRES:
# generic resources per node (default gpu:GPUS_PER_NODE; GRES= for a
# CPU-only partition, where the tasks use gloo with OMP_NUM_THREADS=1 unless
# set). PYTHON picks the interpreter.
set -euo pipefail

if [ $# -lt 3 ]; then
    echo "usage: $0 PARTITION JOB_NAME TOOL [TOOL arguments]" >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
TOOL=$3
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
GRES=${GRES-"gpu:${GPUS_PER_NODE}"}
PYTHON=${PYTHON:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

TOOLS=$(cd "$(dirname "$0")" && pwd)
# shellcheck disable=SC2086  # SRUN_ARGS holds several options
PYTHONPATH="$TOOLS/..${PYTHONPATH:+:$PYTHONPATH}" \
exec srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    ${GRES:+--gres="$GRES"} \
    --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS} \
    "$PYTHON" -u "$TOOLS/$TOOL" "${@:4}"
