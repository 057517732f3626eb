#!/usr/bin/env bash
# Train on a Slurm cluster, one task per GPU:
#   [GPUS=16] [GPUS_PER_NODE=8] tools/slurm_train.sh PARTITION JOB_NAME \
#       CONFIG WORK_DIR [tools/train.py options]
# GPUS: tasks in all (default 8); GPUS_PER_NODE: tasks per node (default
# 8); CPUS_PER_TASK (default 5); SRUN_ARGS: extra srun options; GRES:
# generic resources per node (default gpu:GPUS_PER_NODE; GRES= for a
# CPU-only partition, where the tasks use gloo with OMP_NUM_THREADS=1 unless
# set). PYTHON picks the interpreter.
set -euo pipefail

if [ $# -lt 4 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG WORK_DIR [tools/train.py options]" >&2
    exit 2
fi
exec bash "$(dirname "$0")/slurm_run.sh" "$1" "$2" train.py "$3" \
    --work-dir="$4" --launcher=slurm "${@:5}"
