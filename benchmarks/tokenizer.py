"""Visual tokenizer encode: mmvlp's ``VQKD.encode`` versus mmpretrain
1.2.0's ``VQKD`` (the BEiT v2 tokenizer), side by side with the same
weights.

The mmpretrain model is built as in mmpretrain's BEiT v2 configs (ViT-B/16
encoder, 8192 x 32 codebook), its weights are converted with mmvlp's
converter and loaded into mmvlp's ``VQKD``. Both encode the same raw-pixel
batch in turn (A/B/A/B); mmpretrain's time includes the pixel normalisation
that mmvlp's ``encode`` does inside. The share of equal token ids is
reported next to the images per second.

mmvlp runs twice: eagerly, and with ``compile_encode()`` (its encoder
compiled with the weights frozen in, as ``BEiT3Pretrain(compile_tokenizer=
True)`` and ``tools/tokenize_images.py --compile`` run it; compiled once
before the timing, which is reported as ``compile_s``). The headline
``speedup`` is the compiled one, ``speedup_eager`` the eager one;
``--no-compile`` leaves the compiled variant out.

Usage::

    python benchmarks/tokenizer.py                   # base, batch 8, CPU
    python benchmarks/tokenizer.py --device cuda --batch-size 128
"""
import argparse
import copy
import os
import sys
import time
from typing import Callable, Optional, Sequence

import torch

if __package__ in (None, ''):
    sys.path.insert(0, os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))

from benchmarks.common import (add_common_args, compare,  # noqa: E402
                               finish, machine_info, median, resolve_device,
                               run_interleaved, setup_threads)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--arch', default='base',
                        help="encoder arch ('base', 'large', ...) or a JSON "
                        'dict with embed_dims, num_layers, num_heads, '
                        'feedforward_channels (64-channel heads)')
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--img-size', type=int, default=224)
    parser.add_argument('--patch-size', type=int, default=16)
    parser.add_argument('--num-codes', type=int, default=8192)
    parser.add_argument('--code-dims', type=int, default=32)
    parser.add_argument('--amp', action='store_true',
                        help='bf16 autocast for both (default: fp32)')
    parser.add_argument('--no-compile', action='store_true',
                        help='time eager mmvlp only (no torch.compile)')
    add_common_args(parser, 'work_dirs/benchmarks/tokenizer.json')
    args = parser.parse_args(argv)
    if args.arch.startswith('{'):
        import json
        args.arch = json.loads(args.arch)
    return args


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    device = resolve_device(args.device)
    setup_threads(args.threads)
    from mmvlp.testing import mmpretrain_vqkd, mmvlp_vqkd_from_mmpretrain
    precision = 'bf16-autocast' if args.amp else 'fp32'
    print(f'VQ-KD encode ({args.arch} encoder, {args.num_codes} codes), '
          f'mmpretrain vs mmvlp, batch {args.batch_size}, {precision} on '
          f'{device}, {torch.get_num_threads()} threads', flush=True)
    official = mmpretrain_vqkd(args.arch, img_size=args.img_size,
                               patch_size=args.patch_size,
                               num_codes=args.num_codes,
                               code_dims=args.code_dims, seed=args.seed)
    mmvlp, _ = mmvlp_vqkd_from_mmpretrain(official)
    official, mmvlp = official.to(device), mmvlp.to(device)
    compiled = None
    if not args.no_compile:
        compiled = copy.deepcopy(mmvlp).compile_encode()
    generator = torch.Generator().manual_seed(args.seed + 1)
    images = (torch.rand(args.batch_size, 3, args.img_size, args.img_size,
                         generator=generator) * 255).to(device)
    mean, std = mmvlp.norm.mean.clone(), mmvlp.norm.std.clone()

    def encode_official() -> torch.Tensor:
        with torch.no_grad(), torch.autocast(device.type, torch.bfloat16,
                                             enabled=args.amp):
            return official((images - mean) / std)

    def encoder(model: torch.nn.Module) -> Callable[[], torch.Tensor]:
        def encode() -> torch.Tensor:
            with torch.autocast(device.type, torch.bfloat16,
                                enabled=args.amp):
                return model.encode(images)
        return encode

    variants = dict(mmpretrain=encode_official, mmvlp=encoder(mmvlp))
    reference = encode_official().view(args.batch_size, -1)

    def share_equal(ids: torch.Tensor) -> float:
        """Share of token ids equal to mmpretrain's."""
        return (ids.view(args.batch_size, -1) == reference).float().mean(
        ).item()

    agreement = {'mmvlp': share_equal(variants['mmvlp']())}
    compile_s = None
    if compiled is not None:
        variants['mmvlp_compiled'] = encoder(compiled)
        print('  compiling mmvlp\'s encoder (once per process and input '
              'shape) ...', flush=True)
        start = time.perf_counter()
        ids = variants['mmvlp_compiled']()
        compile_s = time.perf_counter() - start
        state = compiled.compiled_encoder
        if state is None or state.disabled_because is not None:
            raise RuntimeError('mmvlp\'s compiled encode fell back to eager: '
                               f'{state and state.disabled_because}; run with '
                               '--no-compile')
        agreement['mmvlp_compiled'] = share_equal(ids)
        print(f'  compiled in {compile_s:.1f} s', flush=True)
    samples = run_interleaved(variants, args.repeats, args.warmup, device)
    comparisons = {name: compare(samples['mmpretrain'], samples[name])
                   for name in variants if name != 'mmpretrain'}
    rates = {name: args.batch_size / median([s['wall_s'] for s in runs])
             for name, runs in samples.items()}
    for name, stats in comparisons.items():
        print(f'  {name}: {rates[name]:.2f} images/s vs mmpretrain '
              f'{rates["mmpretrain"]:.2f}; speed-up '
              f'{stats["wall_s"]["speedup"]:.3f}x wall, '
              f'{stats["cpu_s"]["speedup"]:.3f}x cpu time; equal token ids '
              f'{agreement[name]:.4f}', flush=True)
    headline = comparisons.get('mmvlp_compiled', comparisons['mmvlp'])
    speedup = headline['wall_s']['speedup']
    payload = dict(
        benchmark='tokenizer', machine=machine_info(device),
        settings=dict(arch=args.arch, batch_size=args.batch_size,
                      img_size=args.img_size, patch_size=args.patch_size,
                      num_codes=args.num_codes, code_dims=args.code_dims,
                      precision=precision, compile=compiled is not None,
                      repeats=args.repeats, warmup=args.warmup,
                      seed=args.seed),
        samples=samples, comparison=comparisons, images_per_s=rates,
        token_agreement=agreement, compile_s=compile_s)
    result = dict(speedup=speedup, speedup_cpu=headline['cpu_s']['speedup'],
                  speedup_eager=comparisons['mmvlp']['wall_s']['speedup'],
                  mmvlp_images_per_s=rates['mmvlp'],
                  mmpretrain_images_per_s=rates['mmpretrain'],
                  token_agreement=agreement['mmvlp'])
    if compiled is not None:
        result.update(mmvlp_compiled_images_per_s=rates['mmvlp_compiled'],
                      token_agreement_compiled=agreement['mmvlp_compiled'],
                      compile_s=compile_s)
    finish('tokenizer', payload, args.out, result)
    return payload


if __name__ == '__main__':
    main()
