#!/usr/bin/env bash
# What tools/dist_train.sh and tools/dist_test.sh share: run
# tools/TOOL with NPROC processes per node through torchrun,
#   tools/dist_run.sh NPROC TOOL [TOOL arguments]
# NNODES, NODE_RANK (0..NNODES-1), MASTER_ADDR (node 0's address) and PORT
# set the nodes; PYTHON picks the interpreter.
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 NPROC TOOL [TOOL arguments]" >&2
    exit 2
fi
GPUS=$1
TOOL=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}
# One intra-op thread per process unless set (torchrun does the same for
# several processes; a single CPU process gets it too, as in mmengine).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

TOOLS=$(cd "$(dirname "$0")" && pwd)
PYTHONPATH="$TOOLS/..${PYTHONPATH:+:$PYTHONPATH}" \
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$TOOLS/$TOOL" \
    "${@:3}"
