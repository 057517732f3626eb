"""Generated demo data for the tests that run the demo pretraining."""
import os.path as osp

from mmvlp.datasets import make_demo_dataset
from mmvlp.text import train_sentencepiece


def make_demo_with_spm(root, num_train: int, num_val: int,
                       size: int = 48) -> str:
    """The generated demo dataset in ``root`` and a 100-piece sentencepiece
    model of its training captions (``text_spm.model`` there); returns
    ``root`` as a string."""
    root = str(root)
    make_demo_dataset(root, num_train=num_train, num_val=num_val, size=size)
    train_sentencepiece(osp.join(root, 'captions_train.jsonl'),
                        osp.join(root, 'text_spm'), vocab_size=100,
                        field='caption')
    return root


def save_demo_pretrain_checkpoint(path: str, config: str) -> str:
    """A checkpoint shaped like ``make demo``'s pretraining (random weights,
    a 16-code MIM head), saved as mmengine's Runner saves it.

    Args:
        path (str): Output file.
        config (str): A transfer config whose ``model.backbone`` is the demo
            vision backbone; its text settings make the full backbone.

    Returns:
        str: ``path``.
    """
    import torch
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.runner.checkpoint import (get_state_dict, save_checkpoint,
                                            weights_to_cpu)

    from mmvlp.models.algorithms import BEiT3Pretrain
    cfg = Config.fromfile(config)
    backbone = dict(cfg.model.backbone, type='BEiT3', vision_only=False,
                    final_norm=True, init_cfg=None)
    for key in ('out_type', 'out_indices', 'drop_path_rate', '_delete_',
                'dynamic_img_size'):
        backbone.pop(key, None)
    init_default_scope('mmvlp')
    torch.manual_seed(0)
    model = BEiT3Pretrain(backbone=backbone, visual_vocab_size=16)
    save_checkpoint(dict(meta=dict(iter=900),
                         state_dict=weights_to_cpu(get_state_dict(model))),
                    str(path))
    return str(path)
