#!/usr/bin/env bash
# Train with NPROC processes per node through torchrun:
#   tools/dist_train.sh CONFIG NPROC [tools/train.py options]
# Several nodes: run it on every node with NNODES, NODE_RANK (0..NNODES-1),
# MASTER_ADDR (node 0's address) and PORT set alike. GPU hosts get one
# process per GPU (NCCL); CPU-only hosts get NPROC gloo processes with one
# thread each (tools/train.py sets this up). PYTHON picks the interpreter.
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG NPROC [tools/train.py options]" >&2
    exit 2
fi
exec bash "$(dirname "$0")/dist_run.sh" "$2" train.py "$1" \
    --launcher pytorch "${@:3}"
