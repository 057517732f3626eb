#!/usr/bin/env bash
# Evaluate a checkpoint with NPROC processes per node through torchrun:
#   tools/dist_test.sh CONFIG CHECKPOINT NPROC [tools/test.py options]
# Same environment as tools/dist_train.sh (NNODES, NODE_RANK, MASTER_ADDR,
# PORT, PYTHON); CPU-only hosts use gloo with one thread per process.
set -euo pipefail

if [ $# -lt 3 ]; then
    echo "usage: $0 CONFIG CHECKPOINT NPROC [tools/test.py options]" >&2
    exit 2
fi
exec bash "$(dirname "$0")/dist_run.sh" "$3" test.py "$1" "$2" \
    --launcher pytorch "${@:4}"
