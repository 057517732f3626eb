"""The README's "use mmvlp from your own configs" example builds and runs."""
import os.path as osp
import re

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

README = osp.join(osp.dirname(__file__), '..', 'README.md')


def test_readme_mmseg_config(tmp_path):
    text = open(README).read()
    block = re.search(r'```python\n(# my_project/configs/.*?)```', text,
                      re.S).group(1)
    path = tmp_path / 'upernet_beit3-base_ade20k.py'
    path.write_text(block)
    cfg = Config.fromfile(str(path))
    assert cfg.model.backbone.type == 'mmvlp.BEiT3'
    assert cfg.model.backbone.init_cfg.type == 'Pretrained'
    init_default_scope('mmseg')
    from mmseg.registry import MODELS
    model = MODELS.build(cfg.model).eval()
    assert type(model.backbone).__name__ == 'BEiT3'
    meta = [dict(img_shape=(512, 512), ori_shape=(512, 512),
                 pad_shape=(512, 512))]
    with torch.no_grad():
        logits = model.encode_decode(torch.randn(1, 3, 512, 512), meta)
    assert logits.shape == (1, 150, 512, 512)
