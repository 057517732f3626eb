"""Estimate the GPU memory of BEiT-3 pretraining per strategy.

Usage:
    python tools/analysis_tools/estimate_memory.py CONFIG [--gpus N]
        [--batch IMAGE TEXT PAIR] [--strategies ddp zero1 zero2 zero3 fsdp]
        [--json OUT]

The model of the config (a ``BEiT3Pretrain`` recipe, e.g.
``configs/beit3/beit3-base-p16_64xb32x3-1m_pretrain.py``) is built on
PyTorch's ``meta`` device (no memory, no weights), and per GPU the script
adds up:

* parameters, gradients and optimizer states (AdamW: two fp32 moments),
  counted from the built model (trainable backbone + heads; the frozen
  visual tokenizer separately) and placed per strategy as in the ZeRO paper
  (Rajbhandari et al., 2020) for mixed precision:

  ======== ============ ============ ========================= ============
  strategy weights      gradients    fp32 master + moments     frozen
  ======== ============ ============ ========================= ============
  ddp      4P (fp32)    4P (fp32)    8P (moments; AMP)         4F
  zero1    2P (bf16)    2P (bf16)    12P / N                   4F
  zero2    2P           2P / N       12P / N                   4F
  zero3    2P / N       2P / N       12P / N                   4F
  fsdp     4P / N       4P / N       8P / N (fp32, AMP)        4F
  ======== ============ ============ ========================= ============

  (the frozen tokenizer stays outside DeepSpeed and FSDP, whole and fp32
  on every GPU: mmvlp.compat.strategies.detach_frozen_modules),
  plus, for ZeRO-3 and FSDP, the layer gathered to run (and one prefetched):
  ``2 x`` the largest Multiway layer at the weights' precision;
* activations: one forward pass per source on the meta device at the
  compute precision (bf16), summing the bytes of every tensor autograd
  saves for backward (parameters excluded), times the per-GPU batch, plus
  the masked token heads' fp32 log-probabilities (masked tokens x
  vocabulary x 4). With activation checkpointing (``with_cp``) the saved
  layer inputs plus one layer's activations (recomputed in backward).

Not counted: the CUDA context and allocator fragmentation (budget 1-3 GB),
temporary buffers (communication buckets: ``reduce_bucket_size`` 5e8 values
in the DeepSpeed configs = 1 GB in bf16), the tokenizer's no-grad forward
and the dataloader. On the meta device attention runs PyTorch's reference
kernel, which saves the attention probabilities; the fused kernels used on
GPUs do not, so the activation figures are upper bounds. They are estimates,
not measurements: docs/scaling.md says how to measure on GPUs.
"""
import argparse
import json
from typing import Dict, Optional, Sequence

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

GIB = 2**30
STRATEGIES = ('ddp', 'zero1', 'zero2', 'zero3', 'fsdp')
#: Mask ratios of the BEiT-3 recipe (image patches; text alone; text in
#: pairs).
MASK_RATIOS = dict(image=0.4, text=0.15, pair_text=0.5)


def build_meta_model(cfg: Config) -> torch.nn.Module:
    """The config's model on the meta device, without loading weights."""
    import mmvlp  # noqa: F401
    from mmvlp.registry import MODELS
    init_default_scope(cfg.get('default_scope', 'mmvlp'))
    model_cfg = cfg.model.copy()
    if 'tokenizer_checkpoint' in model_cfg:
        model_cfg['tokenizer_checkpoint'] = None
    with torch.device('meta'):
        model = MODELS.build(model_cfg)
    return model


def count_parameters(model: torch.nn.Module) -> Dict[str, int]:
    """Trainable and frozen parameters, the backbone's, and the largest
    Multiway layer (the unit ZeRO-3 / FSDP gather)."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters()
                 if not p.requires_grad)
    backbone = getattr(model, 'backbone', model)
    layers = [sum(p.numel() for p in layer.parameters())
              for layer in getattr(backbone, 'layers', [])]
    return dict(trainable=trainable, frozen=frozen,
                backbone=sum(p.numel() for p in backbone.parameters()),
                largest_layer=max(layers, default=0))


def saved_bytes(run, params: Sequence[torch.Tensor]) -> int:
    """Bytes of the tensors autograd saves for backward while ``run()``
    executes, parameters (and views of them) excluded."""
    ids = {id(p) for p in params}
    total = [0]

    def pack(tensor):
        base = tensor
        while base is not None and id(base) not in ids:
            base = base._base
        if base is None:
            total[0] += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run()
    return total[0]


def activation_bytes(backbone: torch.nn.Module, with_cp: bool,
                     dtype: torch.dtype = torch.bfloat16,
                     text_len: Optional[int] = None) -> Dict[str, int]:
    """Saved-for-backward bytes of one sample per source (``image``,
    ``text``, ``pair``) through ``backbone`` (a ``BEiT3``), which may live
    on any device (``meta`` for the estimate, ``cpu`` to check it)."""
    device = next(backbone.parameters()).device
    backbone = backbone.to(dtype).train()
    backbone.with_cp = with_cp
    text_len = text_len or min(backbone.max_text_len, 64)
    height, width = backbone.img_size
    images = torch.zeros(1, 3, height, width, device=device, dtype=dtype)
    text = torch.zeros(1, text_len, device=device, dtype=torch.long)
    padding = torch.zeros(1, text_len, device=device, dtype=torch.bool)
    params = list(backbone.parameters())
    runs = dict(
        image=lambda: backbone.forward_sequence(images=images),
        text=lambda: backbone.forward_sequence(
            text_ids=text, text_padding_mask=padding),
        pair=lambda: backbone.forward_sequence(
            images=images, text_ids=text, text_padding_mask=padding))
    return {source: saved_bytes(run, params) for source, run in runs.items()}


def head_bytes(model: torch.nn.Module, text_len: int) -> Dict[str, int]:
    """fp32 log-probabilities the masked token heads keep, per sample."""
    backbone = model.backbone
    patches = backbone.patch_grid[0] * backbone.patch_grid[1]
    # Logits per masked patch: the vocabulary for the linear head, the
    # head's outputs (bits or groups x 2**s) for a factorised one.
    visual = model.mim_head.fc.out_features
    words = model.mlm_head.vocab_size
    image = round(MASK_RATIOS['image'] * patches) * visual * 4
    return dict(
        image=image,
        text=round(MASK_RATIOS['text'] * text_len) * words * 4,
        pair=image + round(MASK_RATIOS['pair_text'] * text_len) * words * 4)


def model_state_bytes(strategy: str, counts: Dict[str, int],
                      gpus: int) -> Dict[str, float]:
    """Weights, gradients, optimizer states and frozen weights per GPU."""
    p, f, n = counts['trainable'], counts['frozen'], gpus
    layer = counts['largest_layer']
    if strategy == 'ddp':
        states = dict(weights=4 * p, gradients=4 * p, optimizer=8 * p,
                      frozen=4 * f)
    elif strategy == 'zero1':
        states = dict(weights=2 * p, gradients=2 * p, optimizer=12 * p / n,
                      frozen=4 * f)
    elif strategy == 'zero2':
        states = dict(weights=2 * p, gradients=2 * p / n,
                      optimizer=12 * p / n, frozen=4 * f)
    elif strategy == 'zero3':
        states = dict(weights=2 * p / n + 2 * 2 * layer,
                      gradients=2 * p / n, optimizer=12 * p / n,
                      frozen=4 * f)
    elif strategy == 'fsdp':
        states = dict(weights=4 * p / n + 2 * 4 * layer,
                      gradients=4 * p / n, optimizer=8 * p / n,
                      frozen=4 * f)
    else:
        raise ValueError(f'Unknown strategy {strategy!r}; choose one of '
                         f'{STRATEGIES}.')
    return states


def estimate(cfg: Config, gpus: int,
             batch: Optional[Dict[str, int]] = None,
             strategies: Sequence[str] = STRATEGIES) -> dict:
    """The estimate as a dict (see the module docstring)."""
    model = build_meta_model(cfg)
    counts = count_parameters(model)
    if batch is None:
        batch = {source: loader['batch_size']
                 for source, loader in cfg.train_dataloader.items()}
    text_len = min(model.backbone.max_text_len, 64)
    heads = head_bytes(model, text_len)
    full = activation_bytes(model.backbone, False, text_len=text_len)
    inputs = activation_bytes(model.backbone, True, text_len=text_len)
    layers = len(model.backbone.layers)
    activations = dict(
        no_cp=sum((full[s] + heads[s]) * batch.get(s, 0) for s in full),
        # Checkpointed: the layer inputs, plus one layer recomputed in
        # backward at a time (the largest source's share of it).
        with_cp=sum((inputs[s] + heads[s]) * batch.get(s, 0)
                    for s in inputs) +
        max(full[s] / layers * batch.get(s, 0) for s in full))
    rows = {}
    for strategy in strategies:
        states = model_state_bytes(strategy, counts, gpus)
        for key, value in activations.items():
            states[f'activations_{key}'] = value
        states['total_no_cp'] = sum(
            v for k, v in states.items()
            if not k.startswith(('activations', 'total'))) + \
            activations['no_cp']
        states['total_with_cp'] = states['total_no_cp'] - \
            activations['no_cp'] + activations['with_cp']
        rows[strategy] = states
    return dict(parameters=counts, gpus=gpus, batch_per_gpu=batch,
                text_len=text_len, per_gpu_bytes=rows)


def format_table(result: dict) -> str:
    """A Markdown table of the estimate in GiB."""
    counts = result['parameters']
    batch = result['batch_per_gpu']
    lines = [
        f'Parameters: {counts["trainable"] / 1e6:.1f} M trainable '
        f'(backbone {counts["backbone"] / 1e6:.1f} M), '
        f'{counts["frozen"] / 1e6:.1f} M frozen (visual tokenizer); '
        f'largest layer {counts["largest_layer"] / 1e6:.1f} M.',
        f'Per GPU of {result["gpus"]}: batch '
        + ' + '.join(f'{k} {v}' for k, v in batch.items())
        + f', text {result["text_len"]} tokens. GiB:', '',
        '| strategy | weights | gradients | optimizer | frozen | '
        'activations | total | activations (with_cp) | total (with_cp) |',
        '|---|---|---|---|---|---|---|---|---|'
    ]
    for strategy, row in result['per_gpu_bytes'].items():
        values = [row[k] / GIB for k in (
            'weights', 'gradients', 'optimizer', 'frozen',
            'activations_no_cp', 'total_no_cp', 'activations_with_cp',
            'total_with_cp')]
        lines.append(f'| {strategy} | ' + ' | '.join(
            f'{v:.1f}' if v >= 0.05 or v == 0 else f'{v:.2f}'
            for v in values) + ' |')
    return '\n'.join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Estimate per-GPU memory of BEiT-3 pretraining')
    parser.add_argument('config', help='a BEiT3Pretrain config')
    parser.add_argument('--gpus', type=int, default=64,
                        help='data-parallel processes (default 64)')
    parser.add_argument('--batch', type=int, nargs=3,
                        metavar=('IMAGE', 'TEXT', 'PAIR'),
                        help='per-GPU batch per source (default: the '
                        "config's)")
    parser.add_argument('--strategies', nargs='+', default=STRATEGIES,
                        choices=STRATEGIES)
    parser.add_argument('--json', help='also write the numbers here')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    cfg = Config.fromfile(args.config)
    batch = None
    if args.batch:
        batch = dict(zip(('image', 'text', 'pair'), args.batch))
    result = estimate(cfg, args.gpus, batch, args.strategies)
    print(format_table(result))
    if args.json:
        with open(args.json, 'w') as file:
            json.dump(result, file, indent=1)


if __name__ == '__main__':
    main()
