"""mmvlp.runtime.check_config (run by tools/train.py and tools/test.py
before anything is built): unknown types, wrong BEiT-3 settings and
pipelines that contradict the backbone are reported with the field, the
value and what is valid; every shipped config passes."""
import glob
import os.path as osp
import runpy
import sys

import pytest
from helpers.demo_data import make_demo_with_spm
from mmengine.config import Config
from test_pretrain_runner import CONFIG, _cfg

from mmvlp.text import TextTokenizer
from mmvlp.runtime import ConfigError, check_config

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))
PAIR = 'train_dataloader.pair.dataset.pipeline'


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory):
    return make_demo_with_spm(tmp_path_factory.mktemp('config_check'),
                              num_train=4, num_val=1)


def test_shipped_configs_pass():
    """mmvlp's own configs, and one per toolbox (mmdet, mmseg, mmpretrain
    scopes, their registries and base configs)."""
    configs = [path for path in glob.glob(f'{REPO}/configs/**/*.py',
                                          recursive=True)
               if '/_base_/' not in path and (
                   '/mm' not in path or 'demo' in path)]
    assert len(configs) >= 12
    for path in configs:
        check_config(Config.fromfile(path))


def _problems(demo_root, **options):
    cfg = _cfg(demo_root, '/unused')
    cfg.merge_from_dict(options)
    with pytest.raises(ConfigError) as info:
        check_config(cfg)
    assert 'nothing was built or trained' in str(info.value)
    return info.value.problems


@pytest.mark.parametrize('options,expected', [
    ({'model.backbone.type': 'BEiT33'},
     "model.backbone.type='BEiT33' is not in the model registry of scope "
     "'mmvlp'; did you mean 'BEiT3'"),
    ({f'{PAIR}.3.type': 'TokenizeTxt'},
     f"{PAIR}[3].type='TokenizeTxt' is not in the transform registry of "
     "scope 'mmvlp'; did you mean 'TokenizeText'?"),
    ({'train_dataloader.image.dataset.type': 'CustomDataset'},
     "did you mean 'mmpretrain.CustomDataset'"),
    ({'optim_wrapper.optimizer.type': 'AdamWW'},
     "optim_wrapper.optimizer.type='AdamWW' is not in the optimizer "
     "registry of scope 'mmvlp'; did you mean 'AdamW'"),
    ({'default_hooks.nonfinite.type': 'NonFiniteHook'},
     "did you mean 'NonFiniteLossHook'"),
    ({f'{PAIR}.4.mask_ratoi': 0.5},
     f"{PAIR}[4].mask_ratoi: TextMasking has no argument 'mask_ratoi'; "
     "did you mean 'mask_ratio'"),
    ({'model.backbone.arch': 'huge'},
     "model.backbone: Unknown BEiT3 arch 'huge'; choose one of ['base', "
     "'giant', 'large', 'tiny']"),
    ({'model.backbone.img_size': 50},
     'model.backbone: img_size 50x50 is not divisible by patch_size 8; use '
     'a multiple of 8 (e.g. 48x48).'),
    ({'model.backbone.max_text_len': 16},
     f'{PAIR}[3].max_length=24 is longer than the text position table '
     '(model.backbone.max_text_len=16); use max_length <= 16'),
    ({f'{PAIR}.5.pad_to': 40},
     f'{PAIR}[5].pad_to=40 is longer than the text position table '
     '(model.backbone.max_text_len=32)'),
    ({'train_dataloader.text.dataset.tokenizer.max_length': 64},
     'train_dataloader.text.dataset.tokenizer.max_length=64 is longer than '
     'the text position table'),
    ({f'{PAIR}.4.mask_id': 300, f'{PAIR}.4.vocab_size': 400},
     f'{PAIR}[4].vocab_size=400 draws ids beyond the text embedding rows '
     '(model.backbone.vocab_size=256); use vocab_size <= 256.'),
    ({f'{PAIR}.2.input_size': 7},
     f"{PAIR}[2].input_size=(7, 7) does not match the backbone's 6x6 "
     'patch grid (model.backbone.img_size / patch_size); use '
     'input_size=6.'),
    ({f'{PAIR}.1.size': 64},
     f'{PAIR}[1].size=(64, 64) differs from model.backbone.img_size=(48, '
     '48); use size=48.'),
])
def test_reports_field_value_and_valid_values(demo_root, options, expected):
    problems = _problems(demo_root, **options)
    assert any(expected in problem for problem in problems), problems


def test_text_tokenizer_larger_than_the_embedding(demo_root):
    """The demo tokenizer's ids (its pieces + 2 in the xlmr style) do not
    fit 32 embedding rows."""
    ids = TextTokenizer(f'{demo_root}/text_spm.model').vocab_size
    assert ids > 32
    problems = _problems(demo_root, **{
        'model.backbone.vocab_size': 32, 'model.backbone.text_mask_token_id':
        31, f'{PAIR}.4.mask_id': 31, f'{PAIR}.4.vocab_size': 32,
        'train_dataloader.text.dataset.pipeline.0.mask_id': 31,
        'train_dataloader.text.dataset.pipeline.0.vocab_size': 32})
    assert problems == [
        f'{where}.model_file ({demo_root}/text_spm.model) gives {ids} token '
        "ids (style 'xlmr', mask included), more than the text embedding "
        f'rows (model.backbone.vocab_size=32); set vocab_size >= {ids} or '
        'use the matching tokenizer.'
        for where in ('train_dataloader.text.dataset.tokenizer',
                      f'{PAIR}[3]')], problems


def test_every_problem_is_listed(demo_root):
    problems = _problems(demo_root, **{
        'model.backbone.type': 'BEiT33', f'{PAIR}.1.type': 'TwoViewCrp',
        'param_scheduler.0.type': 'ConstantLRR'})
    assert len(problems) == 3


def _tools_train(monkeypatch, tmp_path, *argv):
    monkeypatch.setattr(sys, 'argv', ['tools/train.py', *argv])
    monkeypatch.setenv('LOCAL_RANK', '0')
    monkeypatch.chdir(REPO)
    runpy.run_path(osp.join(REPO, 'tools', 'train.py'), run_name='__main__')


def test_tools_train_stops_before_building(demo_root, tmp_path,
                                           monkeypatch):
    work_dir = tmp_path / 'work'
    with pytest.raises(ConfigError, match="did you mean 'BEiT3'"):
        _tools_train(monkeypatch, tmp_path, CONFIG, '--work-dir',
                     str(work_dir), '--cfg-options',
                     'model.backbone.type=BEiT33')
    assert not work_dir.exists()  # no runner, no log, no checkpoint


def test_mim_vocabulary_mismatch_stops_before_training(demo_root, tmp_path,
                                                       monkeypatch):
    """The visual tokenizer's vocabulary must match the MIM head
    (BEiT3Pretrain checks it while the runner builds the model, before any
    data is loaded)."""
    cfg = _cfg(demo_root, tmp_path / 'work')
    cfg.model.visual_vocab_size = 32  # the demo tokenizer has 12 codes
    config = str(tmp_path / 'mismatch.py')
    cfg.dump(config)
    with pytest.raises(ValueError, match=r"visual_vocab_size=32 does not "
                       r"match the tokenizer's vocab_size=12; drop "
                       r'visual_vocab_size or fix it'):
        _tools_train(monkeypatch, tmp_path, config)
    assert not glob.glob(f'{tmp_path}/work/*.pth')
    log = ''.join(open(p).read() for p in glob.glob(
        f'{tmp_path}/work/*/*.log'))
    assert 'Iter(train)' not in log
