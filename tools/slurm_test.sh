#!/usr/bin/env bash
# Evaluate a checkpoint on a Slurm cluster, one task per GPU:
#   [GPUS=8] tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT \
#       [tools/test.py options]
# Same environment as tools/slurm_train.sh (GPUS, GPUS_PER_NODE,
# CPUS_PER_TASK, SRUN_ARGS, GRES, PYTHON).
set -euo pipefail

if [ $# -lt 4 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG CHECKPOINT [tools/test.py options]" >&2
    exit 2
fi
exec bash "$(dirname "$0")/slurm_run.sh" "$1" "$2" test.py "$3" "$4" \
    --launcher=slurm "${@:5}"
