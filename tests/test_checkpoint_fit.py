"""A checkpoint that does not fit is refused, through every tool and load
path, with one message; files that are not checkpoints get one line; the
expected partial loads still work (docs/reliability.md, "Loading
checkpoints").

The tools run in this process (their ``main(argv)``) on the tiny demo
models and generated data; two subprocess cases check the exit status and
the absence of a traceback end to end.
"""
import importlib.util
import os
import os.path as osp
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from helpers.demo_data import make_demo_with_spm
from helpers.transfer import demo_pretrain_checkpoint
from mmvlp.datasets import make_demo_vl_dataset
from mmvlp.registry import MODELS
from mmvlp.testing import official_state, official_task_model
from mmvlp.checkpoint import (CheckpointFileError, CheckpointFitError,
                              compare_state_dict, load_model_weights,
                              summarize_checkpoint)

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))
sys.path.insert(0, osp.join(REPO, 'tools', 'demo'))
from vl_demo import path_options, smoke_options  # noqa: E402

VQA = osp.join(REPO, 'configs/demo/beit3-tiny-p8_demo-vl-vqa.py')
PRETRAIN = osp.join(REPO, 'configs/demo/beit3-tiny-p8_demo-pretrain.py')
TOKENIZER = osp.join(REPO,
                     'configs/demo/vqkd-color_vit-tiny-p8_demo-tokenizer.py')
DEMO_ARCH = dict(embed_dims=192, num_layers=4, num_heads=3,
                 feedforward_channels=768)
# Files that are not checkpoints (the tools' first check).
NOT_CHECKPOINTS = {
    'text': ('is a text file', 'weights file'),
    'lfs': ('Git LFS pointer', 'git lfs pull'),
    'empty': ('is empty', 'another checkpoint'),
    'truncated': ('cut short', 'earlier checkpoint'),
    'directory': ('is a directory', '.pth file'),
    'missing': ('does not exist', 'check the path'),
    'npz': ('numpy .npz', '.pth file'),
    'unsafe': ('Refusing to load', 'Nothing from it was executed'),
}


def _tool(path):
    name = 'tool_' + re.sub(r'\W', '_', path)
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, osp.join(REPO, 'tools', path))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


def _current_streams():
    """Point mmengine's console handlers (made in earlier tests of this
    process) at the streams of this test."""
    import logging
    from mmengine.logging import MMLogger
    for logger in MMLogger._instance_dict.values():
        for handler in logger.handlers:
            if type(handler) is logging.StreamHandler:
                handler.stream = sys.stdout


def run(path, argv, capfd):
    """``(exit status, stdout, stderr)`` of a tool's ``main(argv)``."""
    _current_streams()
    capfd.readouterr()
    try:
        result = _tool(path).main([str(a) for a in argv])
        code = result if isinstance(result, int) and not isinstance(
            result, bool) else 0
    except SystemExit as exit_:
        code = exit_.code
    out = capfd.readouterr()
    return code, out.out, out.err


class _Payload:
    """Pickles as a call of ``os.system`` (refused by safe loading)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}', )


def _model(config, options=None):
    cfg = Config.fromfile(config)
    if options:
        cfg.merge_from_dict(options)
    init_default_scope('mmvlp')
    return MODELS.build(cfg.model)


def _not_checkpoints(root):
    files = {}
    files['text'] = root / 'notes.pth'
    files['text'].write_text('learning rate 0.001, 10 epochs\n')
    files['lfs'] = root / 'lfs.pth'
    files['lfs'].write_text('version https://git-lfs.github.com/spec/v1\n'
                            'oid sha256:abc\nsize 123\n')
    files['empty'] = root / 'empty.pth'
    files['empty'].write_bytes(b'')
    full = root / 'full.pth'
    torch.save({'state_dict': {'w': torch.zeros(1000)}}, full)
    files['truncated'] = root / 'truncated.pth'
    files['truncated'].write_bytes(full.read_bytes()[:600])
    files['directory'] = root / 'folder'
    files['directory'].mkdir()
    (files['directory'] / 'readme.txt').write_text('x')
    files['missing'] = root / 'nowhere.pth'
    files['npz'] = root / 'arrays.pth'
    with open(files['npz'], 'wb') as file:
        np.savez(file, ids=np.zeros(3))
    files['unsafe'] = root / 'unsafe.pth'
    torch.save({'state_dict': {'w': torch.zeros(1)},
                'meta': _Payload(root / 'pwned')}, files['unsafe'])
    return files


@pytest.fixture(scope='module')
def env(tmp_path_factory):
    """Tiny VL data, a SentencePiece model, and checkpoints of every kind
    (right and wrong) for the demo VQA model, the demo tokenizer and the
    demo pretraining model."""
    root = tmp_path_factory.mktemp('fit')
    make_demo_with_spm(root / 'pre', num_train=24, num_val=2)
    data = str(root / 'vl')
    make_demo_vl_dataset(data, num_train=8, num_val=4, size=48,
                         num_nlvr2=(2, 2))
    text_model = str(root / 'pre' / 'text_spm.model')
    options = path_options(VQA, data, text_model) + smoke_options(1, 4) + [
        'model.backbone.init_cfg=None', 'train_cfg.max_iters=1',
        'train_cfg.val_interval=100', 'default_hooks.checkpoint.interval=100',
        'default_hooks.logger.interval=1']
    answers = osp.join(data, 'vqa', 'answer2label.txt')
    files = _not_checkpoints(root)
    torch.manual_seed(0)
    vqa = _model(VQA, dict(model=dict(answers=answers, backbone=dict(
        init_cfg=None))))
    num_answers = vqa.num_classes
    files['vqa'] = root / 'vqa.pth'  # right
    torch.save({'state_dict': vqa.state_dict()}, files['vqa'])
    files['zero_keys'] = root / 'x.pth'  # the file
    torch.save({'a': torch.zeros(3)}, files['zero_keys'])
    files['other_library'] = root / 'resnet.pth'
    torch.save({'state_dict': {'conv1.weight': torch.zeros(8, 3, 7, 7),
                               'layer1.0.conv1.weight': torch.zeros(8, 8, 1,
                                                                    1),
                               'fc.weight': torch.zeros(10, 8)}},
               files['other_library'])
    tokenizer = _model(TOKENIZER)
    files['tokenizer'] = root / 'vqkd.pth'
    torch.save({'state_dict': tokenizer.state_dict()}, files['tokenizer'])
    files['pretrain'] = root / 'pretrain.pth'
    demo_pretrain_checkpoint(str(files['pretrain']))
    files['bare_backbone'] = root / 'bare.pth'  # the converter's default
    torch.save({k[len('backbone.'):]: v for k, v in vqa.state_dict().items()
                if k.startswith('backbone.')}, files['bare_backbone'])
    files['model_prefix'] = root / 'prefixed.pth'
    torch.save({'state_dict': {'model.' + k: v
                               for k, v in vqa.state_dict().items()}},
               files['model_prefix'])
    small = _model(VQA, dict(model=dict(answers=answers, backbone=dict(
        init_cfg=None, arch=dict(embed_dims=96, num_layers=2)))))
    files['wrong_size'] = root / 'small.pth'
    torch.save({'state_dict': small.state_dict()}, files['wrong_size'])
    files['deeper'] = root / 'deeper.pth'
    deeper = _model(VQA, dict(model=dict(answers=answers, backbone=dict(
        init_cfg=None, arch=dict(num_layers=6)))))
    torch.save({'state_dict': deeper.state_dict()}, files['deeper'])
    official = dict(arch=DEMO_ARCH, img_size=48, patch_size=8,
                    vocab_size=256)
    files['official_vqa'] = root / 'beit3_vqa_official.pth'
    torch.save(official_state(official_task_model(
        'vqav2', num_classes=num_answers, **official)),
        files['official_vqa'])
    files['official_pretrained'] = root / 'beit3_pretrained_official.pth'
    reference = official_task_model('vqav2', num_classes=num_answers,
                                    **official)
    torch.save({'model': {k: v for k, v in reference.state_dict().items()
                          if k.startswith('beit3.')}},
               files['official_pretrained'])
    files['official_other_size'] = root / 'beit3_vqa_w96.pth'
    torch.save(official_state(official_task_model(
        'vqav2', num_classes=num_answers, **dict(
            official, arch=dict(DEMO_ARCH, embed_dims=96)))),
        files['official_other_size'])
    # The converter's outputs of the official files.
    converter = _tool('model_converters/beit3_unilm_to_mmvlp.py')
    for name, source in (('converted_vqa', 'official_vqa'),
                         ('converted_backbone', 'official_pretrained')):
        files[name] = root / f'{name}.pth'
        assert converter.main([str(files[source]), str(files[name])]) == 0
    return dict(root=root, data=data, options=options, files=files,
                answers=answers, text_model=text_model,
                images=str(root / 'pre' / 'images'))


def _official(kind):
    """Official VQA files carry no final norm (final_norm=False)."""
    return ['model.backbone.final_norm=False'] if kind.startswith(
        ('official', 'converted')) else []


def _no_metrics(work_dir):
    """No evaluation result was written."""
    for folder, _, names in os.walk(work_dir):
        for name in names:
            if name.endswith('.json'):
                assert 'VQA/acc' not in open(osp.join(folder, name)).read()


# tools/test.py CONFIG CHECKPOINT: (file, exit status, words of the message)
TEST_TOOL = [(k, 1, words) for k, words in NOT_CHECKPOINTS.items()] + [
    ('zero_keys', 1, ('nothing in the file fits', '0 of 149',
                      'top-level keys [a]', 'BEiT3VQA expects 149 tensors',
                      'backbone.* (139')),
    ('other_library', 1, ('nothing in the file fits',
                          'torchvision-style ResNet')),
    ('tokenizer', 1, ('nothing in the file fits', 'VQ-KD tokenizer',
                      'tokenizer_checkpoint')),
    ('pretrain', 1, ('the answer classifier (head.*) would stay at its '
                     'initial value', 'pretraining checkpoint',
                     'evaluate a checkpoint fine-tuned for this BEiT3VQA')),
    ('bare_backbone', 1, ("lack this model's 'backbone.' prefix",
                          '139 tensors would load with it',
                          "model.backbone.init_cfg")),
    ('model_prefix', 1, ("carry the prefix 'model.'",
                         "prefix='model.'")),
    ('wrong_size', 1, ('tensors have another shape',
                       'width 96 (the model 192)', 'config')),
    ('deeper', 1, ('the file has 6 layers, the model 4',)),
    ('official_pretrained', 1, ('official BEiT-3 file (a pretrained '
                                'backbone', 'has no vqav2 head')),
    ('official_other_size', 1, ('official', 'does not fit this BEiT3VQA',
                                'beit3_unilm_to_mmvlp.py')),
    ('converted_backbone', 1, ("lack this model's 'backbone.' prefix",
                               'converted from unilm-beit3 (backbone)')),
    ('converted_vqa', 0, ('VQA/acc', 'loaded 145/145 tensors')),
    ('vqa', 0, ('VQA/acc', 'loaded 149/149 tensors')),
    # (official VQA models have no final norm: 4 tensors fewer)
    ('official_vqa', 0, ('VQA/acc', 'loaded 145/145 tensors')),
]


@pytest.mark.parametrize('kind,code,words', TEST_TOOL,
                         ids=[c[0] for c in TEST_TOOL])
def test_test_tool(env, capfd, kind, code, words):
    """tools/test.py: a file that is not a checkpoint gets one line before
    anything is built; one that does not fit gets one message and no
    metric; the right files (mmvlp and official) evaluate."""
    work = env['root'] / f'test_{kind}'
    status, out, err = run('test.py', [
        VQA, env['files'][kind], '--work-dir', work, '--cfg-options',
        f'experiment_name=test_{kind}'] + env['options'] + _official(kind),
        capfd)
    assert status == code, (out[-3000:], err[-3000:])
    text = err if code else out
    for word in words:
        assert word in text, (word, text[-3000:])
    if code:
        assert err.startswith('error: ') and 'Traceback' not in err
        assert 'VQA/acc' not in out
        _no_metrics(work)
        if kind in NOT_CHECKPOINTS:
            assert len(err.strip().splitlines()) == 1
            # Stopped before the runner (an unsafe pickle shows only when
            # it is loaded, and nothing in it runs).
            assert work.exists() == (kind == 'unsafe')
    assert not (env['root'] / 'pwned').exists()


def _log(work):
    logs = [osp.join(f, n) for f, _, names in os.walk(work) for n in names
            if n.endswith('.log')]
    return ''.join(open(p).read() for p in logs)


# tools/train.py with load_from (or --resume): (case, file, extra args,
# exit status, words in stderr (failure) or in the log (success)).
TRAIN_TOOL = [
    ('text', 'text', [], 1, ('is a text file', )),
    ('truncated', 'truncated', [], 1, ('cut short', )),
    ('zero_keys', 'zero_keys', [], 1, ('to train from it',
                                       'nothing in the file fits')),
    ('wrong_size', 'wrong_size', [], 1, ('tensors have another shape',
                                         'width 96 (the model 192)')),
    ('bare_backbone', 'bare_backbone', [], 1, (
        "lack this model's 'backbone.' prefix", )),
    ('tokenizer', 'tokenizer', [], 1, ('VQ-KD tokenizer', )),
    ('pretrain', 'pretrain', [], 0, (
        'BEiT3VQA <- pretrain.pth: loaded 139/149 tensors; start fresh: '
        'head.*, pooler.*; not used from the file: mim_head.*, mlm_head.*',
    )),
    ('official_pretrained', 'official_pretrained', [], 0, (
        'loaded 135/145 tensors; start fresh: head.*, pooler.*', )),
    ('allow_partial', 'zero_keys', ['--allow-partial'], 0, (
        'Partial load allowed', 'nothing in the file fits')),
    ('resume', 'pretrain', ['--resume'], 1, (
        'to resume training', '10 of 149 tensors would stay at their '
        'initial value (head.*, pooler.*)')),
]


@pytest.mark.parametrize('case,kind,extra,code,words', TRAIN_TOOL,
                         ids=[c[0] for c in TRAIN_TOOL])
def test_train_tool(env, capfd, case, kind, extra, code, words):
    """tools/train.py: load_from / --resume files that do not fit stop the
    run before the first iteration (no checkpoint written); a pretraining
    checkpoint (mmvlp or official) fine-tunes with a fresh head, reported in
    one line; --allow-partial is the logged opt-out."""
    work = env['root'] / f'train_{case}'
    path = str(env['files'][kind])
    if extra == ['--resume']:
        flags, load = [f'--resume={path}'], []
    else:
        flags, load = list(extra), [f'load_from={path}']
    args = [VQA, '--work-dir', work] + flags + [
        '--cfg-options', f'experiment_name=train_{case}'] + \
        env['options'] + _official(kind) + load
    status, out, err = run('train.py', args, capfd)
    assert status == code, (out[-3000:], err[-3000:])
    text = err if code else _log(work)
    for word in words:
        assert word in text, (word, text[-3000:])
    saved = osp.join(work, 'iter_1.pth')
    if code:
        assert err.startswith('error: ') and 'Traceback' not in err, err
        assert not osp.exists(saved)
    else:
        assert osp.exists(saved)


TOKENIZE_TOOL = [(k, 1, words) for k, words in NOT_CHECKPOINTS.items()] + [
    ('pretrain', 1, ('does not fit this VQKD (to encode)',
                     'nothing in the file fits', 'pretraining checkpoint',
                     'VQKD expects', 'encoder.* (', 'quantizer.* (')),
    ('official_vqa', 1, ('nothing in the file fits', 'official BEiT-3')),
    ('tokenizer', 0, ('tokenized', )),
]


@pytest.mark.parametrize('kind,code,words', TOKENIZE_TOOL,
                         ids=[c[0] for c in TOKENIZE_TOOL])
def test_tokenize_images_tool(env, capfd, kind, code, words):
    """tools/tokenize_images.py: the encoder and codebook must load; the
    output folder appears only after a good load."""
    out_dir = env['root'] / f'tokens_{kind}'
    status, out, err = run('tokenize_images.py', [
        TOKENIZER, env['files'][kind], '--data', env['images'], '--out',
        out_dir], capfd)
    assert status == code, (out[-3000:], err[-3000:])
    for word in words:
        assert word in (err if code else out), (word, err, out[-2000:])
    assert out_dir.exists() == (code == 0)


CONVERTERS = {
    'beit3': 'model_converters/beit3_unilm_to_mmvlp.py',
    'vqkd': 'model_converters/vqkd_to_mmvlp.py',
    'consolidate': 'model_converters/consolidate_checkpoint.py',
}
CONVERT = [(tool, k, [], 1, words) for tool in CONVERTERS
           for k, words in NOT_CHECKPOINTS.items()
           if not (tool == 'consolidate' and k == 'directory')] + [
    ('consolidate', 'directory', [], 1, ('is a directory', )),
    ('beit3', 'pretrain', [], 1, ('not an official BEiT-3 checkpoint',
                                  'pretraining checkpoint',
                                  'fine-tune from it')),
    ('beit3', 'bare_backbone', [], 1, ('not an official BEiT-3',
                                       'bare BEiT3 backbone')),
    ('beit3', 'official_other_size', ['--config', VQA], 1, (
        'does not fit this BEiT3VQA', )),
    ('beit3', 'official_vqa', [], 0, ('saved', )),
    ('vqkd', 'official_vqa', [], 1, ('Not a VQ-KD checkpoint',
                                     'official BEiT-3 file')),
    ('vqkd', 'pretrain', [], 1, ('Not a VQ-KD checkpoint',
                                 'pretraining checkpoint')),
    ('consolidate', 'pretrain', [], 0, ()),
]


@pytest.mark.parametrize('tool,kind,extra,code,words', CONVERT,
                         ids=[f'{c[0]}-{c[1]}' for c in CONVERT])
def test_converters(env, capfd, tool, kind, extra, code, words):
    """The converters: one line for a wrong source, and the output file
    only after a successful conversion."""
    dst = env['root'] / f'{tool}_{kind}_out.pth'
    if extra:
        extra = extra + ['--cfg-options', f'model.answers={env["answers"]}']
    status, out, err = run(CONVERTERS[tool], [env['files'][kind], dst] +
                           extra, capfd)
    assert status == code, (out[-3000:], err[-3000:])
    for word in words:
        assert word in (err if code else out), (word, err, out)
    assert dst.exists() == (code == 0)
    if code:
        assert err.startswith('error: ') and 'Traceback' not in err
    assert not list(env['root'].glob(f'.{dst.name}.*'))  # no temporaries


def test_inferencer_checks_the_checkpoint(env):
    """The inferencers load through the same check as tools/test.py."""
    from mmvlp.apis import init_vl_model
    cfg = Config.fromfile(VQA)
    cfg.merge_from_dict(dict(o.split('=', 1) for o in env['options']))
    with pytest.raises(CheckpointFitError, match='nothing in the file fits'):
        init_vl_model(cfg, str(env['files']['zero_keys']))
    with pytest.raises(CheckpointFitError,
                       match=r'the VQA pooler \(pooler\.\*\) would stay'):
        init_vl_model(cfg, str(env['files']['pretrain']))
    with pytest.raises(CheckpointFileError, match='is empty'):
        init_vl_model(cfg, str(env['files']['empty']))
    model = init_vl_model(cfg, str(env['files']['vqa']))
    saved = torch.load(env['files']['vqa'], weights_only=True)['state_dict']
    torch.testing.assert_close(model.head[3].weight, saved['head.3.weight'])
    # The expert opt-out loads what fits.
    init_vl_model(cfg, str(env['files']['pretrain']), strict=False)


def test_tokenizer_checkpoint_of_pretraining(env):
    """BEiT3Pretrain(tokenizer_checkpoint=...): the encoder and codebook
    must load; a file that is not a checkpoint gets the one-line error."""
    options = dict(model=dict(tokenizer_checkpoint=str(
        env['files']['pretrain'])))
    with pytest.raises(CheckpointFitError) as info:
        _model(PRETRAIN, options)
    assert 'does not fit this VQKD (to encode)' in str(info.value)
    assert 'pretraining checkpoint' in str(info.value)
    options['model']['tokenizer_checkpoint'] = str(env['files']['text'])
    with pytest.raises(CheckpointFileError,
                       match='The tokenizer_checkpoint .* is a text file'):
        _model(PRETRAIN, options)
    # A checkpoint without the decoder still encodes (purpose 'encode').
    state = torch.load(env['files']['tokenizer'],
                       weights_only=True)['state_dict']
    encode_only = env['root'] / 'vqkd_encoder.pth'
    torch.save({k: v for k, v in state.items()
                if not k.startswith(('decoder.', 'decode_task_layer.'))},
               encode_only)
    options['model']['tokenizer_checkpoint'] = str(encode_only)
    model = _model(PRETRAIN, options)
    torch.testing.assert_close(model.tokenizer.quantizer.codebook,
                               state['quantizer.codebook'])
    # ... which is not enough to evaluate the tokenizer.
    with pytest.raises(CheckpointFitError,
                       match=r'(?s)decoder \(decoder\.\*\) would stay.*'
                       'load a checkpoint with'):
        load_model_weights(_model(TOKENIZER), str(encode_only))


def test_init_cfg_pretrained(env):
    """init_cfg=dict(type='Pretrained') on a whole mmvlp model and on the
    BEiT3 backbone: checked; strict=False is the logged opt-out."""
    answers = env['answers']

    def vqa(init_cfg, backbone_init=None):
        return _model(VQA, dict(model=dict(
            answers=answers, init_cfg=init_cfg,
            backbone=dict(init_cfg=backbone_init))))

    model = vqa(dict(type='Pretrained',
                     checkpoint=str(env['files']['other_library'])))
    with pytest.raises(CheckpointFitError, match='torchvision-style ResNet'):
        model.init_weights()
    model = vqa(dict(type='Pretrained', strict=False,
                     checkpoint=str(env['files']['other_library'])))
    model.init_weights()
    model = vqa(dict(type='Pretrained', prefix='encoder.',
                     checkpoint=str(env['files']['vqa'])))
    with pytest.raises(CheckpointFitError,
                       match="No key of .* starts with prefix='encoder.'"):
        model.init_weights()
    # The whole-model pretraining file: the head starts fresh (init).
    model = vqa(dict(type='Pretrained',
                     checkpoint=str(env['files']['pretrain'])))
    model.init_weights()
    # The backbone's own loader: another size, the bare backbone.
    model = vqa(None, dict(type='Pretrained', prefix='backbone.',
                           checkpoint=str(env['files']['wrong_size'])))
    with pytest.raises(CheckpointFitError,
                       match=r'does not fit this BEiT3 .*another shape'):
        model.init_weights()
    model = vqa(None, dict(type='Pretrained', prefix='backbone.',
                           checkpoint=str(env['files']['tokenizer'])))
    with pytest.raises(CheckpointFitError, match='VQ-KD tokenizer'):
        model.init_weights()
    model = vqa(None, dict(type='Pretrained',
                           checkpoint=str(env['files']['bare_backbone'])))
    model.init_weights()
    bare = torch.load(env['files']['bare_backbone'], weights_only=True)
    torch.testing.assert_close(model.backbone.patch_embed.proj.weight,
                               bare['patch_embed.proj.weight'])


def test_file_kinds(tmp_path):
    """What a file is, before and after loading (the start of every
    message)."""
    from mmvlp.checkpoint.inspection import file_problem
    qlip = tmp_path / 'qlip'
    qlip.mkdir()
    (qlip / 'config.json').write_text(
        '{"vision_config": {}, "decoder_config": {}, "text_config": {}}')
    (qlip / 'model.safetensors').write_bytes(b'\x08' + b'\x00' * 7 + b'{}')
    assert file_problem(qlip)[0] == 'qlip-dir'
    assert 'qlip_to_mmvlp.py' in file_problem(qlip)[2]
    assert file_problem(qlip / 'model.safetensors')[0] == 'safetensors'
    deepspeed = tmp_path / 'iter_10.pth'
    deepspeed.mkdir()
    (deepspeed / 'mp_rank_00_model_states.pt').write_bytes(b'x')
    assert file_problem(deepspeed)[0] == 'deepspeed-dir'
    assert 'consolidate_checkpoint.py' in file_problem(deepspeed)[2]
    html = tmp_path / 'page.pth'
    html.write_text('<!DOCTYPE html><html>404</html>')
    assert 'HTML' in file_problem(html)[1]

    def kind(obj):
        return summarize_checkpoint(obj).kind

    weights = {'beit3.vision_embed.proj.weight': torch.zeros(1),
               'beit3.encoder.layers.0.ffn.A.fc1.weight': torch.zeros(1)}
    assert kind({'model': weights}) == 'official-beit3'
    assert 'pretrained backbone' in summarize_checkpoint(
        {'model': weights}).description
    assert kind({'model': {**weights, 'pooler.dense.weight':
                           torch.zeros(1)}}) == 'official-beit3'
    assert 'vqav2' in summarize_checkpoint({'model': {
        **weights, 'pooler.dense.weight': torch.zeros(1)}}).description
    zero3 = {'module': {f'backbone.layers.{i}.w': torch.empty(0)
                        for i in range(3)}, 'ds_version': '0.19'}
    assert kind(zero3) == 'deepspeed-zero3'
    fsdp = summarize_checkpoint({'state_dict': {
        '_fsdp_wrapped_module.backbone.patch_embed.proj.weight':
        torch.zeros(1),
        '_fsdp_wrapped_module.mim_head.fc.weight': torch.zeros(1)}})
    assert fsdp.kind == 'mmvlp-pretrain' and 'FSDP' in fsdp.describe()
    assert kind({'encoder.blocks.0.attn.qkv.weight': torch.zeros(1),
                 'quantize.embedding.weight': torch.zeros(1)}) == \
        'vqkd-official'
    assert kind({'vision_model.embeddings.patch_embedding.weight':
                 torch.zeros(1), 'text_model.x': torch.zeros(1)}) == 'qlip'
    assert kind({'meta': {}, 'epoch': 3}) == 'no-weights'
    assert kind(torch.zeros(2)) == 'not-checkpoint'


class _Net(torch.nn.Module):
    essential_parts = {'backbone.': 'the backbone'}
    head_parts = {'head.': 'the head'}

    def __init__(self, width=4, depth=2):
        super().__init__()
        self.backbone = torch.nn.Module()
        self.backbone.layers = torch.nn.ModuleList(
            torch.nn.Linear(width, width) for _ in range(depth))
        self.head = torch.nn.Linear(width, 3)
        self.extra = torch.nn.Linear(1, 1)


@pytest.mark.parametrize('purpose,dropped,fatal', [
    ('test', 'head.', 'the head (head.*) would stay'),
    ('test', 'extra.', None),  # not declared: reported, not fatal
    ('encode', 'head.', None),
    ('train', 'head.', None),
    ('train', 'backbone.', 'the backbone (backbone.*) would stay'),
    ('train', 'backbone.layers.1.', 'the file has 1 layers, the model 2'),
    ('test', 'backbone.layers.1.bias', '1 of 4 tensors would stay'),
    ('train', 'backbone.layers.1.bias', None),
    ('resume', 'extra.', '2 of 8 tensors would stay'),
])
def test_purpose_rules(purpose, dropped, fatal):
    """What each purpose refuses (the table of mmvlp.checkpoint.fit),
    from names and shapes alone."""
    net = _Net()
    state = {k: v for k, v in net.state_dict().items()
             if not k.startswith(dropped)}
    report = compare_state_dict(net, state, purpose)
    reasons = '; '.join(report.fatal())
    if fatal is None:
        assert not reasons
        report.check()
    else:
        assert fatal in reasons, reasons
        with pytest.raises(CheckpointFitError, match=re.escape(fatal)):
            report.check()
        assert not compare_state_dict(net, state, purpose,
                                      strict=False).fatal()


def test_shapes_and_strictness():
    """Another width is fatal when training except in a head (a new label
    set); strict=True needs every key and nothing extra."""
    net, wide = _Net(), _Net(width=6)
    report = compare_state_dict(net, wide.state_dict(), 'train')
    assert 'tensors have another shape' in '; '.join(report.fatal())
    head = dict(net.state_dict(), **{
        'head.weight': torch.zeros(5, 4), 'head.bias': torch.zeros(5)})
    assert not compare_state_dict(net, head, 'train').fatal()
    assert compare_state_dict(net, head, 'test').fatal()
    extra = dict(net.state_dict(), unused=torch.zeros(1))
    assert not compare_state_dict(net, extra, 'test').fatal()
    assert compare_state_dict(net, extra, 'test', strict=True).fatal()
    line = compare_state_dict(net, head, 'train').line()
    assert 'start fresh: head.* (another shape: head.bias: file (5,), ' \
        'model (3,)' in line


def test_subprocess_exit_status_and_traceback(env):
    """End to end: tools/test.py on the issue's file exits 1 with the
    message and no traceback or metric; MMVLP_DEBUG=1 shows the
    traceback."""
    environ = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=REPO)
    result = subprocess.run(
        [sys.executable, 'tools/test.py', VQA,
         str(env['files']['zero_keys']), '--work-dir',
         str(env['root'] / 'sub_test'), '--cfg-options'] + env['options'],
        cwd=REPO, env=environ, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stderr[-2000:]
    assert 'error: ' in result.stderr and 'nothing in the file fits' in \
        result.stderr
    assert 'Traceback' not in result.stderr
    assert 'VQA/acc' not in result.stdout
    converter = 'tools/model_converters/beit3_unilm_to_mmvlp.py'
    dst = env['root'] / 'sub_out.pth'
    args = [sys.executable, converter, str(env['files']['text']), str(dst)]
    result = subprocess.run(args, cwd=REPO, env=environ,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 1
    assert result.stderr.startswith('error: ')
    assert len(result.stderr.strip().splitlines()) == 1
    debug = subprocess.run(args, cwd=REPO, capture_output=True, text=True,
                           env=dict(environ, MMVLP_DEBUG='1'), timeout=600)
    assert debug.returncode == 1
    assert 'Traceback' in debug.stderr and 'is a text file' in debug.stderr
    assert not dst.exists()
