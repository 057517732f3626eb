"""The paper-scale pretraining configs: recipe numbers and model sizes."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmvlp.registry import MODELS

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
