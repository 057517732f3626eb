"""tools/tokenize_images.py: ids per image, skipped files, resuming."""
import importlib.util
import json
import os
import os.path as osp

import numpy as np
import torch

from mmvlp.datasets import make_demo_dataset
from mmvlp.models import VQKD

TOOL = osp.join(osp.dirname(__file__), '..', 'tools', 'tokenize_images.py')
CONFIG = """
default_scope = 'mmvlp'
model = dict(
    type='VQKD',
    encoder=dict(arch=dict(embed_dims=32, num_layers=1, num_heads=1,
                           feedforward_channels=64), img_size=32,
                 patch_size=16),
    quantizer=dict(type='NormEMAVectorQuantizer', num_codes=16, code_dims=4,
                   kmeans_init=False),
    decoder=None)
"""


def _tool():
    spec = importlib.util.spec_from_file_location('tokenize_images', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tokenize_images_resumes_and_counts_skips(tmp_path, capsys):
    make_demo_dataset(str(tmp_path / 'data'), num_train=5, num_val=0,
                      size=48)
    images = tmp_path / 'data' / 'images' / 'train'
    (images / 'broken.png').write_bytes(b'not an image')
    config = tmp_path / 'vqkd.py'
    config.write_text(CONFIG)
    torch.manual_seed(0)
    model = VQKD(encoder=dict(arch=dict(embed_dims=32, num_layers=1,
                                        num_heads=1, feedforward_channels=64),
                              img_size=32, patch_size=16),
                 quantizer=dict(type='NormEMAVectorQuantizer', num_codes=16,
                                code_dims=4, kmeans_init=False),
                 decoder=None)
    checkpoint = tmp_path / 'vqkd.pth'
    torch.save({'state_dict': model.state_dict()}, checkpoint)
    out = tmp_path / 'tokens'
    args = [str(config), str(checkpoint), '--data', str(images), '--out',
            str(out), '--shard-size', '2', '--batch-size', '2']
    tool = _tool()
    assert tool.main(args) == 0
    meta = json.loads((out / 'meta.json').read_text())
    assert meta['images'] == 5 and meta['skipped'] == 1
    assert meta['skipped_paths'][0].endswith('broken.png')
    assert meta['shards'] == 3 and meta['grid'] == [2, 2]
    assert meta['id_bit_order'] is None  # codebook ids, no bit packing
    shards = [np.load(out / f'shard_{i:05d}.npz') for i in range(3)]
    ids = np.concatenate([s['ids'] for s in shards])
    assert ids.shape == (5, 2, 2) and ids.dtype == np.int16
    # The ids are the tokenizer's, for the resized and centre-cropped image.
    first = tool.load_image(str(images / '00000.png'), (32, 32))
    expected = model.eval().encode(
        torch.from_numpy(first).permute(2, 0, 1)[None].float())
    assert np.array_equal(ids[0], expected[0].numpy())

    # Resume: remove one shard and touch the others; only it is redone.
    stamp = os.path.getmtime(out / 'shard_00000.npz')
    os.remove(out / 'shard_00001.npz')
    assert tool.main(args) == 0
    assert os.path.getmtime(out / 'shard_00000.npz') == stamp
    assert np.array_equal(np.load(out / 'shard_00001.npz')['ids'],
                          shards[1]['ids'])
    assert json.loads((out / 'meta.json').read_text())['skipped'] == 1

    # --compile: the same ids from the compiled encoder (one graph for the
    # batches of 2 and the last, padded batch of 1).
    compiled_out = tmp_path / 'tokens_compiled'
    assert tool.main(args[:5] + [str(compiled_out)] + args[6:] +
                     ['--compile']) == 0
    compiled_ids = np.concatenate([
        np.load(compiled_out / f'shard_{i:05d}.npz')['ids']
        for i in range(3)])
    assert np.array_equal(compiled_ids, ids)
