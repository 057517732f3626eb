# FSDP with sharded checkpoints: every rank writes its own shard
# (ITER.pth/rank{i}.pth; fast, no gathering on rank 0), resumable with the
# same number of processes. Consolidate them into one mmengine .pth with
#   tools/dist_run.sh N model_converters/consolidate_checkpoint.py \
#       CONFIG ITER.pth OUT.pth
# See fsdp.py.
_base_ = ['./fsdp.py']
strategy = dict(state_dict_cfg='local')
