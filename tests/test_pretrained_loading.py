"""``init_cfg=dict(type='Pretrained', ...)`` on BEiT3 for every checkpoint
layout: mmvlp pretraining, converted and official BEiT-3, DeepSpeed / FSDP.

Checkpoints are synthesized in the layouts the writers produce: mmengine's
Runner (``meta``, ``state_dict``, ``message_hub``), DeepSpeed's
``mp_rank_00_model_states.pt`` inside a checkpoint directory
(``deepspeed/runtime/engine.py::_common_checkpoint_state`` + mmengine's
client state), mmengine's ``FSDPStrategy`` full state dict and
``zero_to_fp32.py``'s plain dict.
"""
import importlib.util
import logging
import os.path as osp
from collections import OrderedDict

import pytest
import torch
from mmengine.logging import MessageHub
from mmengine.registry import init_default_scope
from mmengine.runner.checkpoint import (get_state_dict, save_checkpoint,
                                        weights_to_cpu)

from helpers.logs import LogCatcher
from helpers.reference import TINY, build_reference, official_checkpoint
from mmvlp.models import BEiT3
from mmvlp.models.algorithms import BEiT3Pretrain
from mmvlp.models.backbones.beit3_checkpoint import (extract_state_dict,
                                                     is_text_only_key,
                                                     select_backbone_keys)
from mmvlp.models.layers import resize_pos_embed

ARCH = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)
TEXT = dict(vocab_size=100, max_text_len=16, text_mask_token_id=99)
CONVERTER = osp.join(osp.dirname(__file__), '..', 'tools',
                     'model_converters', 'beit3_unilm_to_mmvlp.py')


@pytest.fixture(scope='module')
def pretrain_model():
    """A tiny BEiT3Pretrain with a (random) VQ-KD tokenizer, 32 px, patch 8,
    so its checkpoint has backbone.*, tokenizer.*, mim_head.*, mlm_head.*."""
    init_default_scope('mmvlp')
    torch.manual_seed(0)
    return BEiT3Pretrain(
        backbone=dict(type='BEiT3', arch=ARCH, img_size=32, patch_size=8,
                      **TEXT),
        tokenizer=dict(
            type='VQKD',
            encoder=dict(arch=dict(embed_dims=16, num_layers=1, num_heads=2,
                                   feedforward_channels=32),
                         img_size=32, patch_size=8),
            quantizer=dict(type='NormEMAVectorQuantizer', num_codes=8,
                           code_dims=4),
            decoder=dict(arch=dict(embed_dims=16, num_layers=1, num_heads=2,
                                   feedforward_channels=32)),
            target=dict(type='ColorHistogramTarget', patch_size=8, bins=2)))


@pytest.fixture(scope='module')
def pretrain_checkpoint(pretrain_model, tmp_path_factory):
    """Saved the way mmengine's Runner.save_checkpoint saves it."""
    path = tmp_path_factory.mktemp('pretrain') / 'iter_10.pth'
    hub = MessageHub.get_instance('pretrain_ckpt')
    hub.update_scalar('train/loss', 1.5)
    save_checkpoint(
        dict(meta=dict(epoch=0, iter=10, seed=0, mmengine_version='0.10.7'),
             state_dict=weights_to_cpu(get_state_dict(pretrain_model)),
             message_hub=hub.state_dict()), str(path))
    return str(path)


def _vision_backbone(img_size=48, **kwargs):
    cfg = dict(arch=ARCH, img_size=img_size, patch_size=8, vision_only=True,
               final_norm=False, out_type='avg_featmap', **TEXT)
    cfg.update(kwargs)
    return BEiT3(**cfg)


def _source_backbone(pretrain_model):
    return {k[len('backbone.'):]: v
            for k, v in pretrain_model.state_dict().items()
            if k.startswith('backbone.')}


def _assert_loaded(model, source, grid_from, grid_to):
    own = model.state_dict()
    for key, value in own.items():
        if key == 'pos_embed_vision':
            expected = resize_pos_embed(source[key], grid_from, grid_to)
        else:
            expected = source[key]
        torch.testing.assert_close(value, expected, msg=key)


def test_pretrain_checkpoint_into_mmpretrain_classifier(
        pretrain_model, pretrain_checkpoint):
    """A classifier built from an mmpretrain config loads the pretraining
    checkpoint: text parts dropped with one log line, 4x4 -> 6x6 positions,
    final norm ignored, every vision weight equal, nothing else reported."""
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    classifier = MODELS.build(dict(
        type='ImageClassifier',
        backbone=dict(
            type='mmvlp.BEiT3', arch=ARCH, img_size=48, patch_size=8,
            vision_only=True, final_norm=False, out_type='avg_featmap',
            init_cfg=dict(type='Pretrained', checkpoint=pretrain_checkpoint,
                          prefix='backbone.'), **TEXT),
        head=dict(type='mmvlp.BEiT3ClsHead', num_classes=4, in_channels=32)))
    with LogCatcher() as logs:
        classifier.init_weights()
    source = _source_backbone(pretrain_model)
    num_text = sum(is_text_only_key(k) for k in source)
    assert num_text > 0
    dropped = logs.matching('dropped')
    assert dropped == [
        f'BEiT3 (vision_only=True): dropped {num_text} text-only tensors of '
        'the checkpoint (text_embed, pos_embed_text and the text / '
        'vision-language experts (*.text, *.vl)); vision tasks do not use '
        'them.']
    assert len(logs.matching('from a 4x4 grid to 6x6')) == 1
    assert len(logs.matching('ignored the final norm')) == 1
    assert not logs.matching('do not match', logging.WARNING)
    _assert_loaded(classifier.backbone, source, (4, 4), (6, 6))
    scores = classifier(torch.randn(2, 3, 48, 48), mode='tensor')
    assert scores.shape == (2, 4) and torch.isfinite(scores).all()


def test_whole_model_load_from_drops_text_too(pretrain_checkpoint):
    """mmdet/mmseg ``load_from`` of a whole checkpoint goes through the same
    ``_load_from_state_dict``: no text key is reported as unexpected."""
    from mmengine.runner import load_checkpoint
    model = torch.nn.Module()
    model.backbone = _vision_backbone(final_norm=True)
    with LogCatcher() as logs:
        load_checkpoint(model, pretrain_checkpoint, logger='current')
    unexpected = ' '.join(logs.matching('unexpected key'))
    assert 'tokenizer' in unexpected and 'backbone' not in unexpected
    assert len(logs.matching('dropped')) == 1


def _converter():
    spec = importlib.util.spec_from_file_location('beit3_converter',
                                                  CONVERTER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def official_files(tmp_path_factory):
    """An official-format file (torchscale weights, 32 px, patch 16) and its
    conversion with the converter tool (bare keys)."""
    folder = tmp_path_factory.mktemp('official')
    reference = build_reference(TINY, img_size=32)
    official = folder / 'beit3_official.pth'
    torch.save(official_checkpoint(reference, 'model', {
        'head.weight': torch.zeros(3, 64)}), official)
    converted = folder / 'beit3_mmvlp.pth'
    assert _converter().main([str(official), str(converted)]) == 0
    return str(official), str(converted)


@pytest.mark.parametrize('which', ['converted', 'official'])
def test_converted_and_official_checkpoints(official_files, which):
    official, converted = official_files
    path = converted if which == 'converted' else official
    model = BEiT3(arch=TINY, img_size=48, vision_only=True,
                  out_type='avg_featmap', max_text_len=1022,
                  init_cfg=dict(type='Pretrained', checkpoint=path,
                                prefix='backbone.'))
    with LogCatcher() as logs:
        model.init_weights()
    source = 'bare backbone keys' if which == 'converted' else \
        'official BEiT-3 keys'
    assert len(logs.matching(source)) == 1
    assert len(logs.matching('dropped')) == 1
    assert not logs.matching('do not match', logging.WARNING)
    reference = torch.load(converted, weights_only=True)['state_dict']
    _assert_loaded(model, reference, (2, 2), (3, 3))


def _pretrain_state(pretrain_model):
    return {k: v.clone() for k, v in pretrain_model.state_dict().items()}


def _deepspeed_dir(state, folder):
    """What DeepSpeedStrategy(save_optimizer=True) leaves: a directory
    named like the checkpoint with mp_rank_00_model_states.pt inside."""
    ckpt_dir = folder / 'iter_10.pth'
    ckpt_dir.mkdir()
    torch.save(dict(
        module=state,
        buffer_names=[],
        optimizer=None,
        param_shapes=[OrderedDict((k, v.shape) for k, v in state.items())],
        frozen_param_shapes=None,
        shared_params={},
        frozen_param_fragments=None,
        lr_scheduler=None,
        data_sampler=None,
        random_ltd=None,
        skipped_steps=0,
        global_steps=10,
        global_samples=40,
        dp_world_size=2,
        mp_world_size=1,
        ds_config=dict(train_micro_batch_size_per_gpu=2,
                       zero_optimization=dict(stage=2)),
        ds_version='0.19.8',
        meta=dict(seed=0, time='20260101_000000'),
        param_schedulers=[dict(last_epoch=10)]),
        ckpt_dir / 'mp_rank_00_model_states.pt')
    return ckpt_dir


LAYOUTS = {
    # DeepSpeedStrategy with the optimizer: a directory.
    'deepspeed_dir': lambda state, folder: _deepspeed_dir(state, folder),
    # DeepSpeedStrategy(save_optimizer=False) and FSDPStrategy (full state
    # dict): an mmengine file.
    'fsdp_full': lambda state, folder: _save(
        folder, dict(state_dict=state, optimizer=dict(state={},
                                                      param_groups=[]),
                     param_schedulers=[], meta=dict(seed=0))),
    # zero_to_fp32.py: a plain state dict.
    'zero_to_fp32': lambda state, folder: _save(folder, OrderedDict(state)),
    # A DDP-wrapped / FSDP-wrapped module's own state_dict().
    'wrapped_names': lambda state, folder: _save(folder, {
        'module.' + k.replace('backbone.layers.', 'backbone._fsdp_wrapped_'
                              'module.layers.'): v
        for k, v in state.items()}),
}


def _save(folder, obj):
    path = folder / 'checkpoint.pth'
    torch.save(obj, path)
    return path


@pytest.mark.parametrize('layout', sorted(LAYOUTS))
def test_deepspeed_and_fsdp_layouts(pretrain_model, tmp_path, layout):
    path = LAYOUTS[layout](_pretrain_state(pretrain_model), tmp_path)
    model = _vision_backbone(init_cfg=dict(
        type='Pretrained', checkpoint=str(path), prefix='backbone.'))
    with LogCatcher() as logs:
        model.init_weights()
    assert len(logs.matching('dropped')) == 1
    assert not logs.matching('do not match', logging.WARNING)
    _assert_loaded(model, _source_backbone(pretrain_model), (4, 4), (6, 6))


def test_last_checkpoint_pointer(pretrain_model, pretrain_checkpoint,
                                 tmp_path):
    """``checkpoint=<work_dir>/last_checkpoint`` loads the file it names
    (the transfer demo configs point at the pretraining's), and the log
    names that file."""
    pointer = tmp_path / 'last_checkpoint'
    pointer.write_text(pretrain_checkpoint)
    model = _vision_backbone(init_cfg=dict(
        type='Pretrained', checkpoint=str(pointer), prefix='backbone.'))
    with LogCatcher() as logs:
        model.init_weights()
    assert len(logs.matching(f'Load BEiT3 weights from '
                             f'{pretrain_checkpoint}:')) == 1
    _assert_loaded(model, _source_backbone(pretrain_model), (4, 4), (6, 6))


def test_zero3_placeholders_name_the_fix(pretrain_model, tmp_path):
    state = {k: torch.empty(0) if k.startswith('backbone.layers') else v
             for k, v in _pretrain_state(pretrain_model).items()}
    path = _deepspeed_dir(state, tmp_path)
    model = _vision_backbone(init_cfg=dict(
        type='Pretrained', checkpoint=str(path), prefix='backbone.'))
    with pytest.raises(ValueError, match='zero_to_fp32.py'):
        model.init_weights()


def test_extract_and_select_pure_functions():
    weights = {'backbone.patch_embed.proj.weight': torch.ones(1),
               'backbone.layers.0.x': torch.ones(1), 'head.w': torch.ones(1)}
    for wrapped in (weights, {'state_dict': weights}, {'module': weights},
                    {'model': weights}, {'state_dict': {'module': weights}},
                    {'module': {f'module.{k}': v
                                for k, v in weights.items()}}):
        assert extract_state_dict(wrapped) == weights
    sub, where = select_backbone_keys(weights, 'backbone.')
    assert set(sub) == {'patch_embed.proj.weight', 'layers.0.x'}
    assert where == "the keys under 'backbone.'"
    assert select_backbone_keys(weights)[0] == sub  # default prefix
    assert select_backbone_keys(sub, 'backbone.')[1] == 'the bare backbone keys'


def test_mismatches_are_explained(pretrain_checkpoint):
    # A prefix that is not in the file.
    model = _vision_backbone(init_cfg=dict(
        type='Pretrained', checkpoint=pretrain_checkpoint, prefix='encoder.'))
    with pytest.raises(ValueError, match=r"no key starts with 'encoder\.'.*"
                       r"\['backbone', 'mim_head', 'mlm_head', 'tokenizer'\]"):
        model.init_weights()
    # Another width.
    model = _vision_backbone(
        arch=dict(ARCH, embed_dims=48),
        init_cfg=dict(type='Pretrained', checkpoint=pretrain_checkpoint))
    with pytest.raises(ValueError, match='does not fit this BEiT3'):
        model.init_weights()
    # More layers than the checkpoint: an error naming both depths; with
    # strict=False (the expert opt-out) one warning line; strict=True
    # requires every key.
    for strict in (None, False, True):
        model = _vision_backbone(
            arch=dict(ARCH, num_layers=3),
            init_cfg=dict(type='Pretrained', checkpoint=pretrain_checkpoint,
                          strict=strict))
        if strict is None:
            with pytest.raises(ValueError, match='the file has 2 layers, the '
                               'model 3'):
                model.init_weights()
            continue
        if strict:
            with pytest.raises(ValueError, match='strict loading: 16 model '
                               'tensors not loaded, 0 file tensors not used'):
                model.init_weights()
            continue
        with LogCatcher() as logs:
            model.init_weights()
        (warning, ) = logs.matching('start fresh', logging.WARNING)
        assert 'start fresh: layers.{2}.*' in warning, warning
        assert 'Partial load allowed' in warning
        assert 'not used from the file' not in warning
    # No checkpoint at all.
    model = _vision_backbone(init_cfg=dict(type='Pretrained', checkpoint=''))
    with pytest.raises(ValueError, match='init_cfg=None to train from'):
        model.init_weights()


def test_vision_only_refuses_text():
    model = _vision_backbone()
    with pytest.raises(ValueError, match='vision_only=True'):
        model.forward_sequence(text_ids=torch.ones(1, 4, dtype=torch.long))
