"""Official BEiT-3 fine-tuned files give the official outputs through every
loading route.

The official fine-tuning models (unilm ``beit3/modeling_finetune.py`` heads
on torchscale 0.3.0's ``BEiT3``, :mod:`mmvlp.testing.reference_finetune`)
are built with random weights at several sizes (odd widths, depths,
vocabularies and image sizes), saved as the official code saves them
(``{'model': state_dict}``) and loaded into the mmvlp task models through
``init_cfg=dict(type='Pretrained')`` on the model, mmengine's
``load_checkpoint`` (what ``load_from`` and ``tools/test.py`` run),
``load_state_dict`` of the raw file, and the converter followed by a
``strict=True`` load. Inputs come from the same raw images and token ids
through each side's own preprocessing; outputs must agree to 1e-4 (fp32).
"""
import importlib.util
import os
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import init_default_scope
from mmengine.runner.checkpoint import load_checkpoint
from helpers.logs import LogCatcher
from mmpretrain.structures import DataSample

from mmvlp.models.converters import map_official_beit3, unwrap_checkpoint
from mmvlp.registry import MODELS
from mmvlp.testing import official_state, official_task_model

TOL = 1e-4
TOOL = osp.join(osp.dirname(__file__), '..', 'tools', 'model_converters',
                'beit3_unilm_to_mmvlp.py')
SIZES = {
    # width 48 / 3 heads, 2 layers, FFN 80, vocabulary 101, 2x2 patches
    'w48d2v101': dict(arch=dict(embed_dims=48, num_layers=2, num_heads=3,
                                feedforward_channels=80),
                      img_size=32, patch_size=16, vocab_size=101),
    # width 40 / 5 heads, 3 layers, FFN 72, beit3.spm's 64010 rows, 5x5
    'w40d3v64010': dict(arch=dict(embed_dims=40, num_layers=3, num_heads=5,
                                  feedforward_channels=72),
                        img_size=40, patch_size=8, vocab_size=64010),
    # width 24 / 2 heads, 1 layer, FFN 40, vocabulary 1000, 3x3 patches of 12
    'w24d1v1000': dict(arch=dict(embed_dims=24, num_layers=1, num_heads=2,
                                 feedforward_channels=40),
                       img_size=36, patch_size=12, vocab_size=1000),
}
TASKS = ('imagenet', 'vqav2', 'nlvr2', 'retrieval', 'captioning')
NUM_CLASSES = dict(imagenet=11, vqav2=13, nlvr2=2, retrieval=2, captioning=2)
ROUTES = ('init_cfg', 'load_checkpoint', 'load_state_dict', 'converter')
VL_MEAN, VL_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
IN_MEAN, IN_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _tool():
    spec = importlib.util.spec_from_file_location('beit3_converter', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mask_id(size):
    """The text mask id both sides use (beit3.spm's 64001, or the last
    row of a small vocabulary)."""
    vocab = SIZES[size]['vocab_size']
    return 64001 if vocab > 64001 else vocab - 1


@pytest.fixture(scope='module')
def official(tmp_path_factory):
    """(task, size) -> (official model, path of its official file)."""
    folder = tmp_path_factory.mktemp('official')
    cache = {}

    def get(task, size):
        if (task, size) not in cache:
            settings = SIZES[size]
            model = official_task_model(
                task, settings['arch'], img_size=settings['img_size'],
                patch_size=settings['patch_size'],
                vocab_size=settings['vocab_size'],
                num_classes=NUM_CLASSES[task], seed=len(cache))
            path = folder / f'{task}_{size}.pth'
            torch.save(official_state(model), path)
            cache[task, size] = (model, str(path))
        return cache[task, size]

    return get


def mmvlp_cfg(task, size, path):
    """The mmvlp model config that fits the file (as the converter prints
    it), with what a config adds: answers, the head count, preprocessing."""
    init_default_scope('mmvlp')
    weights = unwrap_checkpoint(torch.load(path, weights_only=True))
    cfg = map_official_beit3(
        weights, num_heads=SIZES[size]['arch']['num_heads']).model_cfg()
    if task == 'vqav2':
        cfg['answers'] = [f'answer {i}' for i in range(NUM_CLASSES[task])]
    if task == 'captioning':
        cfg['backbone']['text_mask_token_id'] = mask_id(size)
    if task == 'imagenet':
        cfg['data_preprocessor'] = dict(
            type='mmpretrain.ClsDataPreprocessor',
            mean=[m * 255 for m in IN_MEAN], std=[s * 255 for s in IN_STD],
            to_rgb=True)
    return cfg


def load(task, size, path, route, tmp_path):
    cfg = mmvlp_cfg(task, size, path)
    if route == 'init_cfg':
        cfg['init_cfg'] = dict(type='Pretrained', checkpoint=path)
        model = MODELS.build(cfg)
        model.init_weights()
    elif route == 'load_checkpoint':  # Runner.load_checkpoint's internals
        model = MODELS.build(cfg)
        load_checkpoint(model, path, map_location='cpu', strict=True,
                        logger='silent', revise_keys=[(r'^module.', '')])
    elif route == 'load_state_dict':
        model = MODELS.build(cfg)
        model.load_state_dict(torch.load(path, weights_only=True),
                              strict=True)
    else:
        dst = str(tmp_path / f'{task}_{size}_mmvlp.pth')
        assert _tool().main([path, dst]) == 0
        model = MODELS.build(cfg)
        model.load_state_dict(torch.load(dst, weights_only=True)['state_dict'],
                              strict=True)
    return model.eval()


def raw_inputs(size, batch=3, length=7, seed=0):
    """Raw RGB uint8 images and token ids with padding (the second and
    third texts are shorter)."""
    rng = np.random.default_rng(seed)
    side = SIZES[size]['img_size']
    images = rng.integers(0, 256, (batch, side, side, 3), dtype=np.uint8)
    vocab = SIZES[size]['vocab_size']
    ids = torch.as_tensor(rng.integers(4, min(vocab - 1, 64000),
                                       (batch, length)))
    ids[:, 0] = 0  # <s>
    padding = torch.zeros(batch, length, dtype=torch.bool)
    padding[1, length - 2:] = True
    padding[2, 3:] = True
    ids[padding] = 1  # <pad>
    return images, ids, padding


def official_images(images, mean=VL_MEAN, std=VL_STD):
    """The official preprocessing: ToTensor (/255) and Normalize."""
    x = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(mean)[:, None, None]) / \
        torch.tensor(std)[:, None, None]


def mmvlp_batch(model, images, samples):
    """Images as mmcv loads them (BGR, CHW uint8) through the model's own
    data preprocessor."""
    if isinstance(images, list):  # NLVR2: one tensor per image slot
        inputs = [torch.as_tensor(i[..., ::-1].copy()).permute(0, 3, 1, 2)
                  for i in images]
    else:
        inputs = torch.as_tensor(images[..., ::-1].copy()).permute(0, 3, 1, 2)
    return model.data_preprocessor(
        dict(inputs=inputs, data_samples=samples), False)


def text_samples(ids, padding):
    return [DataSample(text_ids=i, text_padding_mask=p)
            for i, p in zip(ids, padding)]


def assert_close(got, expected, what):
    assert got.shape == expected.shape, what
    diff = (got - expected).abs().max().item()
    assert diff <= TOL, f'{what}: max abs diff {diff:.2e}'


def compare(task, size, reference, model):
    """Outputs of the official model and the mmvlp model on the same raw
    inputs."""
    images, ids, padding = raw_inputs(size)
    with torch.no_grad():
        if task == 'imagenet':
            expected = reference.forward_imagenet(
                official_images(images, IN_MEAN, IN_STD))
            data = mmvlp_batch(model, images, None)
            got = model(data['inputs'], mode='tensor')
            assert_close(got, expected, 'imagenet logits')
        elif task == 'vqav2':
            expected = reference.forward_vqav2(official_images(images), ids,
                                               padding)
            data = mmvlp_batch(model, images, text_samples(ids, padding))
            got = model(data['images'], data['data_samples'], mode='tensor')
            assert_close(got, expected, 'VQA logits')
        elif task == 'nlvr2':
            other, _, _ = raw_inputs(size, seed=1)
            expected = reference.forward_nlvr2(
                official_images(images), official_images(other), ids,
                padding)
            data = mmvlp_batch(model, [images, other],
                               text_samples(ids, padding))
            got = model(data['images'], data['data_samples'], mode='tensor')
            assert_close(got, expected, 'NLVR2 logits')
        elif task == 'retrieval':
            vision, language = reference.forward_retrieval(
                official_images(images), ids, padding)
            data = mmvlp_batch(model, images, text_samples(ids, padding))
            feats = model(data['images'], data['data_samples'], mode='tensor')
            assert_close(feats['image_feat'], vision, 'image embeddings')
            assert_close(feats['text_feat'], language, 'text embeddings')
            assert_close(model.logit_scale, reference.logit_scale,
                         'logit scale')
        else:
            compare_captioning(size, reference, model, images, ids, padding)


def compare_captioning(size, reference, model, images, ids, padding):
    """Token scores of a masked prefix (training forward) and of the
    cached decoding steps."""
    masked = ids.clone()
    chosen = torch.zeros_like(padding)
    chosen[:, 2] = chosen[:, 4] = True
    chosen &= ~padding
    masked[chosen] = mask_id(size)
    expected = reference.forward_captioning(official_images(images), masked,
                                            padding, chosen)
    samples = [DataSample(text_ids=i, masked_text_ids=m, text_padding_mask=p)
               for i, m, p in zip(ids, masked, padding)]
    data = mmvlp_batch(model, images, samples)
    got = model(data['images'], data['data_samples'], mode='tensor')
    assert_close(got[chosen], expected, 'caption token scores')

    # Decoding: <s> [MASK] with the image, then [word, MASK] per step, the
    # mask's keys/values dropped (the official incremental state).
    from mmvlp.models.multimodal import CachedSteps
    steps = CachedSteps(model.backbone, model.next_token_logits, 0,
                        mask_id(size), max_text_tokens=8)
    mask = mask_id(size)
    state = {}
    words = ids[:, 1:5]
    batch = ids.shape[0]
    first = torch.tensor([[0, mask]]).expand(batch, 2)
    expected = reference.forward_captioning(
        official_images(images), first, torch.zeros(batch, 2).long(),
        text_len=2, incremental_state=state)[:, -1]
    assert_close(steps.start(data['images']), expected, 'decoding step 0')
    for step in range(words.shape[1]):
        for layer in state.values():
            for key in ('prev_key', 'prev_value'):
                layer[key] = layer[key][:, :, :-1]
        pair = torch.stack([words[:, step], torch.full_like(words[:, 0],
                                                            mask)], 1)
        expected = reference.forward_captioning(
            None, pair, None, text_len=step + 3,
            incremental_state=state)[:, -1]
        assert_close(steps.step(words[:, step]), expected,
                     f'decoding step {step + 1}')


@pytest.mark.parametrize('size', sorted(SIZES))
@pytest.mark.parametrize('task', TASKS)
def test_parity_through_every_route(task, size, official, tmp_path):
    reference, path = official(task, size)
    for route in ROUTES:
        model = load(task, size, path, route, tmp_path)
        compare(task, size, reference, model)


@pytest.mark.parametrize('variant', ['module', 'bare', 'no_prefix',
                                     'ddp_prefix', 'vision_only'])
def test_file_variants(variant, official, tmp_path):
    """The plausible layouts of released files: weights under ``module``,
    a bare state dict, keys without ``beit3.``, DDP's ``module.`` on every
    key, and an ImageNet file with the vision parts only."""
    task = 'imagenet' if variant == 'vision_only' else 'vqav2'
    reference, _ = official(task, 'w48d2v101')
    state = dict(
        module=lambda: official_state(reference, 'module'),
        bare=lambda: official_state(reference, None),
        no_prefix=lambda: {k[len('beit3.'):] if k.startswith('beit3.')
                           else k: v for k, v in
                           official_state(reference, None).items()},
        ddp_prefix=lambda: official_state(reference, 'model', 'module.'),
        vision_only=lambda: official_state(reference, vision_only=True),
    )[variant]()
    path = str(tmp_path / f'{variant}.pth')
    torch.save(state, path)
    for route in ('load_checkpoint', 'converter'):
        model = load(task, 'w48d2v101', path, route, tmp_path)
        compare(task, 'w48d2v101', reference, model)


def test_position_table_resized_as_the_official_code(official, tmp_path):
    """A file for larger images (a 480 VQA file into a 384 config) loads
    with its patch positions interpolated as the official fine-tuning
    code does (bicubic, CLS and the 2 offset rows kept); the outputs equal
    the official model at the new size with the official resizing."""
    reference, path = official('vqav2', 'w40d3v64010')  # 5x5 patches
    settings = dict(SIZES['w40d3v64010'], img_size=24)  # 3x3 patches
    target = official_task_model(
        'vqav2', settings['arch'], img_size=24, patch_size=8,
        vocab_size=settings['vocab_size'], num_classes=13)
    weights = official_state(reference, None)
    table = weights['beit3.encoder.embed_positions.A.weight']
    extra, grid = table[:3], table[3:].reshape(1, 5, 5, -1)
    grid = F.interpolate(grid.permute(0, 3, 1, 2), size=(3, 3),
                         mode='bicubic', align_corners=False)
    weights['beit3.encoder.embed_positions.A.weight'] = torch.cat(
        [extra, grid.permute(0, 2, 3, 1).flatten(0, 2)])
    target.load_state_dict(weights, strict=True)

    cfg = mmvlp_cfg('vqav2', 'w40d3v64010', path)
    cfg['backbone']['img_size'] = 24
    model = MODELS.build(cfg).eval()
    load_checkpoint(model, path, logger='silent', strict=True)
    SIZES['w40d3v64010_24'] = settings
    try:
        compare('vqav2', 'w40d3v64010_24', target.eval(), model)
    finally:
        del SIZES['w40d3v64010_24']


def test_a_missing_head_is_named_with_the_fix(official, tmp_path):
    """A pretrained (head-less) file or another task's file into a task
    model: the backbone loads, and a warning names the head that keeps
    its initialisation and what to load instead."""
    reference, path = official('nlvr2', 'w48d2v101')
    pretrained = {k: v for k, v in official_state(reference)['model'].items()
                  if k.startswith('beit3.')}
    source = str(tmp_path / 'pretrained.pth')
    torch.save({'model': pretrained}, source)
    cfg = mmvlp_cfg('nlvr2', 'w48d2v101', path)
    captioner, caption_file = official('captioning', 'w48d2v101')
    for file, what, owner in (
            (source, 'only a pretrained backbone', reference),
            (caption_file, 'only the captioning head', captioner)):
        model = MODELS.build(cfg)
        with LogCatcher() as logs:
            load_checkpoint(model, file, logger='current')
        warnings = ' '.join(logs.warnings())
        assert 'no nlvr2 head (BEiT3ForVisualReasoning: ' \
            'head.{norm1,dense1,norm2,dense2}.*)' in warnings
        assert what in warnings and 'head.dense1' in warnings
        assert 'to evaluate, load a fine-tuned nlvr2 file' in warnings
        torch.testing.assert_close(model.backbone.cls_token,
                                   owner.beit3.vision_embed.cls_token)
    assert 'Not loaded from the file: mlm_head' in warnings
    assert 'captioning head, not used by a nlvr2 model' in warnings
    # Strict loading refuses instead.
    with pytest.raises(RuntimeError, match='head.dense1.weight'):
        MODELS.build(cfg).load_state_dict({'model': pretrained}, strict=True)


def test_whole_model_init_cfg_replaces_the_backbone_init(official):
    """init_cfg on the task model wins over the shipped configs' backbone
    init_cfg (a pretrained file that need not exist)."""
    reference, path = official('retrieval', 'w48d2v101')
    cfg = mmvlp_cfg('retrieval', 'w48d2v101', path)
    cfg['backbone']['init_cfg'] = dict(type='Pretrained',
                                       checkpoint='does/not/exist.pth')
    cfg['init_cfg'] = dict(type='Pretrained', checkpoint=path)
    model = MODELS.build(cfg)
    model.init_weights()
    compare('retrieval', 'w48d2v101', reference, model.eval())


SHIPPED = {
    # config: (task, arch, image size, classes)
    'mmpretrain/beit3-base-p16_8xb128-coslr-50e_in1k':
        ('imagenet', 'base', 224, 1000),
    'mmpretrain/beit3-large-p16_8xb128-coslr-50e_in1k':
        ('imagenet', 'large', 224, 1000),
    'beit3/beit3-base-p16-480_8xb16-10e_vqav2': ('vqav2', 'base', 480, 3129),
    'beit3/beit3-large-p16-480_8xb16-10e_vqav2':
        ('vqav2', 'large', 480, 3129),
    'beit3/beit3-large-p16-768_vqav2-test': ('vqav2', 'large', 768, 3129),
    'beit3/beit3-base-p16-224_8xb32-20e_nlvr2': ('nlvr2', 'base', 224, 2),
    'beit3/beit3-large-p16-224_8xb32-20e_nlvr2': ('nlvr2', 'large', 224, 2),
    'beit3/beit3-base-p16-384_16xb192-15e_coco-retrieval':
        ('retrieval', 'base', 384, 2),
    'beit3/beit3-large-p16-384_32xb96-15e_coco-retrieval':
        ('retrieval', 'large', 384, 2),
    'beit3/beit3-base-p16-384_16xb192-20e_flickr30k-retrieval':
        ('retrieval', 'base', 384, 2),
    'beit3/beit3-large-p16-384_32xb96-20e_flickr30k-retrieval':
        ('retrieval', 'large', 384, 2),
    'beit3/beit3-base-p16-480_8xb32-10e_coco-caption':
        ('captioning', 'base', 480, 2),
    'beit3/beit3-large-p16-480_8xb32-10e_coco-caption':
        ('captioning', 'large', 480, 2),
}


def shipped_model(config):
    """A shipped config's model on the meta device (stand-ins for the
    answer list and the text tokenizer, which are files)."""
    tool = _tool()
    options = {'model.answers': [f'a{i}' for i in range(3129)]} \
        if 'vqav2' in config else {}
    if 'caption' in config:
        options['model.tokenizer'] = None
    return tool.build_meta_model(
        osp.join(osp.dirname(__file__), '..', 'configs', config + '.py'),
        options)


@pytest.mark.parametrize('config', sorted(SHIPPED))
def test_official_files_fit_the_shipped_configs(config):
    """A released file of each kind (its keys and shapes, as the official
    code builds it at base / large size) maps onto the model of the shipped
    config exactly: nothing missing, nothing left over, so the converted
    file loads with strict=True (built on the meta device: no memory)."""
    task, arch, size, classes = SHIPPED[config]
    model = shipped_model(config)
    with torch.device('meta'):
        reference = official_task_model(task, arch, img_size=size,
                                        num_classes=classes)
    mapping = map_official_beit3(official_state(reference, None),
                                 model=model)
    assert mapping.missing == [] and mapping.unused == {}, mapping.problems()
    own = model.state_dict()
    assert set(mapping.state_dict) == set(own)
    for key, value in mapping.state_dict.items():
        assert value.shape == own[key].shape, key
    # The pretrained file (224, with its final norm) into the same config:
    # the backbone fits; only the head is left to fine-tuning.
    with torch.device('meta'):
        pretrained = official_task_model('retrieval', arch, img_size=224)
    weights = {k: v for k, v in official_state(pretrained, None).items()
               if k.startswith('beit3.')}
    mapping = map_official_beit3(weights, model=model)
    assert mapping.missing and all(
        not k.startswith('backbone.') for k in mapping.missing)


def test_tools_test_py_evaluates_an_official_file(tmp_path):
    """``tools/test.py CONFIG OFFICIAL_FILE``, the released file as it is,
    through the test loop of a config (the demo VQA config at the file's
    size): nothing missing or unexpected, and the answer scores of every
    test question equal the official model's on the same images and
    questions."""
    import subprocess
    import sys

    from mmengine import load

    from helpers.demo_data import make_demo_with_spm
    from mmvlp.datasets import make_demo_vl_dataset
    from mmvlp.datasets.vl_formats import read_answer_vocab
    from mmvlp.registry import DATASETS

    repo = osp.abspath(osp.join(osp.dirname(__file__), '..'))
    spm = osp.join(make_demo_with_spm(tmp_path / 'pre', 24, 0),
                   'text_spm.model')
    data = str(tmp_path / 'vl')
    make_demo_vl_dataset(data, num_train=4, num_val=4, size=48)
    answer_file = osp.join(data, 'vqa', 'answer2label.txt')
    answers = read_answer_vocab(answer_file)
    arch = dict(embed_dims=48, num_layers=2, num_heads=3,
                feedforward_channels=80)
    reference = official_task_model('vqav2', arch, img_size=48,
                                    patch_size=8, vocab_size=256,
                                    num_classes=len(answers), seed=5)
    official_file = str(tmp_path / 'beit3_vqa.pth')
    torch.save(official_state(reference), official_file)

    dump = str(tmp_path / 'predictions.pkl')
    from mmengine.config import Config
    cfg = Config.fromfile(
        osp.join(repo, 'configs/demo/beit3-tiny-p8_demo-vl-vqa.py'))
    cfg.model.answers = answer_file
    cfg.model.backbone.update(init_cfg=None, final_norm=False, arch=arch)
    # BEiT-3's VL normalisation (the demo's own is ImageNet's).
    cfg.model.data_preprocessor.update(mean=[127.5] * 3, std=[127.5] * 3)
    loader = cfg.test_dataloader
    loader.update(num_workers=0, persistent_workers=False)
    loader.dataset.data_root = data
    loader.dataset.pipeline[2].model_file = spm
    cfg.test_evaluator = [dict(type='mmpretrain.VQAAcc'),
                          dict(type='DumpResults', out_file_path=dump)]
    config = tmp_path / 'vqa_official.py'
    cfg.dump(str(config))
    result = subprocess.run(
        [sys.executable, 'tools/test.py', str(config), official_file,
         '--work-dir', str(tmp_path / 'work')], cwd=repo,
        env=dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=repo),
        capture_output=True, text=True, timeout=600)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert 'missing keys' not in out and 'unexpected key' not in out
    assert 'BEiT3VQA: loading an official BEiT-3 file' in out
    assert 'kept the first 32 of 1022 text positions' in out
    assert 'VQA/acc' in out
    predictions = load(dump)

    # The official model on the same test samples (the config's pipeline:
    # images as loaded and resized, questions as tokenized).
    init_default_scope('mmvlp')
    dataset = DATASETS.build(loader.dataset)
    assert len(predictions) == len(dataset) > 4
    for index, predicted in enumerate(predictions):
        item = dataset[index]
        sample = item['data_samples']
        image = official_images(item['inputs'].flip(0).permute(
            1, 2, 0)[None].numpy())
        with torch.no_grad():
            logits = reference.forward_vqav2(
                image, torch.as_tensor(sample.text_ids)[None],
                torch.as_tensor(sample.text_padding_mask)[None])
        assert predicted['question_id'] == sample.question_id
        assert_close(predicted['pred_score'], logits[0].sigmoid(),
                     f'answer scores of question {index}')


def test_a_head_of_another_size_is_left_out_with_a_warning(official):
    """An ImageNet file (11 classes) into a classifier of 7 classes (fine-
    tuning on another label set): the backbone and fc_norm load, the
    classifier keeps its initialisation as the official code drops a head
    of another size, with a warning; a backbone of another size raises."""
    reference, path = official('imagenet', 'w48d2v101')
    cfg = mmvlp_cfg('imagenet', 'w48d2v101', path)
    cfg['head']['num_classes'] = 7
    model = MODELS.build(cfg)
    initial = model.head.fc.weight.clone()
    with LogCatcher() as logs:
        load_checkpoint(model, path, logger='current')
    warnings = ' '.join(logs.warnings())
    assert 'The head of the file does not fit the model (head.fc.' in warnings
    assert "set the model's number of classes" in warnings
    assert torch.equal(model.head.fc.weight, initial)
    torch.testing.assert_close(model.head.fc_norm.weight,
                               reference.fc_norm.weight)
    cfg = mmvlp_cfg('imagenet', 'w48d2v101', path)
    cfg['backbone']['arch']['feedforward_channels'] = 64
    with pytest.raises(ValueError, match='does not fit this '
                       'BEiT3ImageClassifier.*ffn.vision.fc1.weight'):
        load_checkpoint(MODELS.build(cfg), path, logger='silent')
