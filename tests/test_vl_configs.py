"""Every vision-language config builds (models on the meta device for
base/large, pipelines with a stand-in tokenizer), and the recipes hold the
official fine-tuning hyper-parameters."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import Compose

import mmvlp.datasets  # noqa: F401
import mmvlp.models  # noqa: F401
from mmvlp.datasets.vl_formats import write_answer_vocab
from mmvlp.registry import MODELS, TRANSFORMS
from mmvlp.text import train_sentencepiece

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))
TASK_SUFFIXES = ('retrieval.py', 'vqav2.py', 'caption.py', 'nlvr2.py')
RECIPES = sorted(p for p in glob.glob(osp.join(REPO, 'configs/beit3/*.py'))
                 if p.endswith(TASK_SUFFIXES))
DEMOS = sorted(glob.glob(osp.join(REPO, 'configs/demo/*demo-vl-*.py')))
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')

# name: (arch, image size, lr, layer decay, drop path, total batch, epochs,
#        warm-up epochs, weight decay) from unilm beit3/get_started/*.md.
OFFICIAL = {
    'beit3-base-p16-384_16xb192-15e_coco-retrieval':
        ('base', 384, 2e-4, 0.65, 0.2, 16 * 192, 15, 3, 0.05),
    'beit3-large-p16-384_32xb96-15e_coco-retrieval':
        ('large', 384, 5e-5, 0.85, 0.2, 32 * 96, 15, 3, 0.05),
    'beit3-base-p16-384_16xb192-20e_flickr30k-retrieval':
        ('base', 384, 1e-4, 0.65, 0.2, 16 * 192, 20, 5, 0.05),
    'beit3-large-p16-384_32xb96-20e_flickr30k-retrieval':
        ('large', 384, 5e-5, 0.85, 0.2, 32 * 96, 20, 5, 0.05),
    'beit3-base-p16-480_8xb16-10e_vqav2':
        ('base', 480, 3e-5, 1.0, 0.1, 8 * 16, 10, 1, 0.01),
    'beit3-large-p16-480_8xb16-10e_vqav2':
        ('large', 480, 2e-5, 1.0, 0.15, 8 * 16, 10, 1, 0.01),
    'beit3-base-p16-480_8xb32-10e_coco-caption':
        ('base', 480, 4e-5, 1.0, 0.1, 8 * 32, 10, 1, 0.05),
    'beit3-large-p16-480_8xb32-10e_coco-caption':
        ('large', 480, 8e-6, 1.0, 0.1, 8 * 32, 10, 1, 0.05),
    'beit3-base-p16-224_8xb32-20e_nlvr2':
        ('base', 224, 7e-4, 0.65, 0.2, 8 * 32, 20, 5, 0.2),
    'beit3-large-p16-224_8xb32-20e_nlvr2':
        ('large', 224, 3e-4, 0.85, 0.2, 8 * 32, 20, 5, 0.2),
}


@pytest.fixture(scope='module')
def stand_ins(tmp_path_factory):
    """A SentencePiece model (XLM-R layout) and an answer vocabulary in
    place of beit3.spm and VQAv2's answer2label.txt."""
    root = tmp_path_factory.mktemp('stand_ins')
    corpus = root / 'corpus.txt'
    corpus.write_text('\n'.join(
        f'a {c} {s} at the top left' for c in ('red', 'blue', 'green')
        for s in ('circle', 'square', 'triangle')) + '\n')
    train_sentencepiece(str(corpus), str(root / 'spm'), vocab_size=40)
    answers = str(root / 'answer2label.txt')
    write_answer_vocab([f'answer {i}' for i in range(3129)], answers)
    return dict(spm=str(root / 'spm.model'), answers=answers)


def _with_stand_ins(cfg: Config, stand_ins: dict) -> Config:
    model = cfg.model
    if model.get('answers') is not None:
        model.answers = stand_ins['answers']
    if model.get('tokenizer') is not None:
        model.tokenizer.model_file = stand_ins['spm']
    for loader in LOADERS:
        for step in cfg[loader].dataset.pipeline:
            if step.type == 'TokenizeText':
                step.model_file = stand_ins['spm']
    return cfg


def test_every_task_has_recipes():
    names = {osp.splitext(osp.basename(p))[0] for p in RECIPES}
    assert names == set(OFFICIAL)
    assert len(DEMOS) == 4


@pytest.mark.parametrize('path', RECIPES, ids=osp.basename)
def test_recipe_builds_with_official_values(path, stand_ins):
    name = osp.splitext(osp.basename(path))[0]
    arch, size, lr, decay, drop_path, batch, epochs, warmup, wd = \
        OFFICIAL[name]
    cfg = _with_stand_ins(Config.fromfile(path), stand_ins)
    backbone = cfg.model.backbone
    assert (backbone.arch, backbone.img_size) == (arch, size)
    assert backbone.drop_path_rate == drop_path
    gpus = int(name.split('_')[1].split('xb')[0])
    assert gpus * cfg.train_dataloader.batch_size == batch
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.lr, optimizer.weight_decay) == (lr, wd)
    assert cfg.optim_wrapper.paramwise_cfg.layer_decay_rate == decay
    assert cfg.train_cfg.max_epochs == epochs
    warm, cosine = cfg.param_scheduler
    assert (warm.end, cosine.begin, cosine.end) == (warmup, warmup, epochs)
    assert abs(warm.start_factor * lr - 1e-6) < 1e-12  # from 1e-6
    assert abs(cosine.eta_min_ratio * lr - 1e-6) < 1e-12  # to 1e-6
    if 'vqav2' in name:
        assert backbone.final_norm is False
        assert optimizer.betas == (0.9, 0.98)
        assert cfg.optim_wrapper.paramwise_cfg.custom_keys == {
            'head.': dict(lr_mult=20.)}
    if 'caption' in name:
        # num_max_bpe_tokens of the official evaluation
        assert cfg.model.max_length == 64
        assert (cfg.model.num_beams, cfg.model.length_penalty) == (3, 0.6)
        assert not cfg.model.get('ban_special_tokens', False)
        masking = [s for s in cfg.train_dataloader.dataset.pipeline
                   if s.type == 'TextMasking'][0]
        assert masking.mask_ratio == 0.7
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    assert model.backbone.num_layers == (12 if arch == 'base' else 24)
    for loader in LOADERS:
        Compose([TRANSFORMS.build(t)
                 for t in cfg[loader].dataset.pipeline])


@pytest.mark.parametrize('path', DEMOS, ids=osp.basename)
def test_demo_config_builds(path, stand_ins):
    cfg = _with_stand_ins(Config.fromfile(path), stand_ins)
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    assert model.backbone.patch_grid == (6, 6)
    for loader in LOADERS:
        Compose([TRANSFORMS.build(t)
                 for t in cfg[loader].dataset.pipeline])
