"""The paper-scale pretraining configs: recipe numbers and model sizes, and
one CPU iteration of the base recipe through tools/dist_train.sh (torchrun
running tools/train.py)."""
import glob
import json
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
from helpers.ports import free_port
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmvlp.datasets import make_demo_dataset
from mmvlp.registry import MODELS
from mmvlp.text import train_sentencepiece

CONFIGS = osp.join(osp.dirname(__file__), '..', 'configs', 'beit3')


@pytest.mark.parametrize('name,params,layout,grid', [
    ('beit3-base-p16_64xb32x3-1m_pretrain.py', 220e6, 'decoupled', 14),
    ('beit3-large-p16_64xb32x3-1m_pretrain.py', 672e6, 'decoupled', 14),
    ('beit3-giant-p14_64xb32x3-1m_pretrain.py', 1847e6, 'shared', 16),
])
def test_recipe(name, params, layout, grid):
    cfg = Config.fromfile(osp.join(CONFIGS, name))
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.lr, optimizer.betas, optimizer.eps,
            optimizer.weight_decay) == (1e-3, (0.9, 0.98), 1e-6, 0.05)
    assert cfg.optim_wrapper.clip_grad.max_norm == 3.0
    assert cfg.param_scheduler[0].end == 10000
    assert cfg.train_cfg.max_iters == 1000000
    assert cfg.model.backbone.drop_path_rate == 0.1
    assert {k: v.batch_size for k, v in cfg.train_dataloader.items()} == \
        dict(image=32, text=32, pair=32)  # x 64 GPUs = 2048 each
    init_default_scope('mmvlp')
    cfg.model.tokenizer_checkpoint = None
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    count = sum(p.numel() for p in model.backbone.parameters())
    assert abs(count - params) / params < 0.01
    assert model.backbone.layout == layout
    assert model.backbone.patch_grid == (grid, grid)
    assert model.mim_head.vocab_size == 8192


def test_base_recipe_trains_one_iteration_on_cpu(tmp_path):
    """tools/dist_train.sh (one gloo process of tools/train.py) runs the base
    recipe as written (architecture, data pipelines, optimizer) for one
    iteration on generated data: only the
    data paths, batch sizes, loader workers, length and checkpoint saving
    are overridden, and the VQ-KD teacher is left random (a warning says
    that the MIM targets are random then). ~35 s and ~6 GB on 2 cores."""
    root = str(tmp_path / 'data')
    make_demo_dataset(root, num_train=4, num_val=1, size=48)
    train_sentencepiece(osp.join(root, 'captions_train.jsonl'),
                        osp.join(root, 'text_spm'), vocab_size=100,
                        field='caption')
    spm = osp.join(root, 'text_spm.model')
    config = osp.join(CONFIGS, 'beit3-base-p16_64xb32x3-1m_pretrain.py')
    pipeline = Config.fromfile(config).train_dataloader.pair.dataset.pipeline
    tokenize, = [i for i, step in enumerate(pipeline)
                 if step.type == 'TokenizeText']
    options = [
        f'train_dataloader.image.dataset.data_root={root}',
        'train_dataloader.image.dataset.data_prefix=images/train',
        f'train_dataloader.text.dataset.ann_file={root}/captions_train.jsonl',
        'train_dataloader.text.dataset.field=caption',
        f'train_dataloader.text.dataset.tokenizer.model_file={spm}',
        f'train_dataloader.pair.dataset.data_root={root}',
        'train_dataloader.pair.dataset.ann_file=captions_train.jsonl',
        f'train_dataloader.pair.dataset.pipeline.{tokenize}.model_file={spm}',
        'model.tokenizer_checkpoint=None',
        'train_cfg.max_iters=1',
        'default_hooks.checkpoint=None',  # 3.6 GB of weights + AdamW state
        'default_hooks.logger.interval=1',
    ] + [f'train_dataloader.{source}.{key}'
         for source in ('image', 'text', 'pair')
         for key in ('batch_size=1', 'num_workers=0',
                     'persistent_workers=False')]
    work_dir = tmp_path / 'work'
    env = dict(os.environ, OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='',
               PYTHON=sys.executable, PORT=str(free_port()))
    result = subprocess.run(
        ['bash', osp.join(CONFIGS, '..', '..', 'tools', 'dist_train.sh'),
         config, '1', '--work-dir', str(work_dir), '--cfg-options'] + options,
        env=env, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert 'MIM targets are random token ids' in output
    # The recipe's bf16 AmpOptimWrapper on CPU: bf16 where the CPU has bf16
    # units, else fp32 with the reason.
    assert re.search(r'AmpOptimWrapper: (bf16 autocast on CPU \(.+\), fp32 '
                     r'master weights, no loss scaler|training in fp32 '
                     r'because this CPU has neither)', output), output[-3000:]
    path, = glob.glob(osp.join(str(work_dir), '*', 'vis_data',
                               'scalars.json'))
    with open(path) as f:
        scalars = [json.loads(line) for line in f]
    assert [s['step'] for s in scalars] == [1]
    for key in ('loss_mim_image', 'loss_mlm_text', 'loss_mim_pair',
                'loss_mlm_pair'):
        # near log(8192) = 9.0 and log(64010) = 11.1 at initialisation
        assert 5 < scalars[0][key] < 15, (key, scalars[0][key])
