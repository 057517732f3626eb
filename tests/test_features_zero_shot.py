"""Feature extraction and zero-shot classification (mmvlp.apis.
FeatureExtractor, ZeroShotClassifier, tools/extract_features.py): the
features are the backbone's and the retrieval model's own numbers, official
retrieval files give the official model's embeddings, zero-shot scores
equal a hand computation, and the tool resumes and counts bad files."""
import importlib.util
import json
import os
import os.path as osp

import mmcv
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.runner import load_checkpoint
from mmengine.runner.checkpoint import save_checkpoint, weights_to_cpu

from helpers.demo_data import make_demo_with_spm
from helpers.reference import TINY, build_reference, official_checkpoint
from mmvlp.apis import FeatureExtractor, ZeroShotClassificationInferencer
from mmvlp.apis.zero_shot import zero_shot_cfg
from mmvlp.models import BEiT3, ZeroShotClassifier
from mmvlp.registry import MODELS, build_scoped
from mmvlp.text import TextTokenizer

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))
TOOL = osp.join(REPO, 'tools', 'extract_features.py')
SIZE = 48
MAX_LEN = 16
# The official text table (64010 rows; the SentencePiece model of the test
# uses the first ~100).
BACKBONE = dict(type='BEiT3', arch=TINY, img_size=SIZE, patch_size=16,
                max_text_len=32)
TEXTS = ['a large red circle at the top left on a grey background',
         'a small blue square', 'a green triangle and a large white stripe']
CLASSES = ['red', 'green', 'blue', 'white']
TEMPLATES = ['a photo with a {} shape', 'a large {} circle', '{}']


def _cfg(text_model: str) -> Config:
    """A tiny retrieval config: BEiT-3 mean / std (0.5), 48 x 48 images,
    the demo's SentencePiece model."""
    return Config(dict(
        model=dict(type='BEiT3Retrieval', backbone=dict(BACKBONE)),
        test_dataloader=dict(dataset=dict(pipeline=[
            dict(type='LoadImageSafe'),
            dict(type='mmpretrain.Resize', scale=(SIZE, SIZE),
                 backend='pillow', interpolation='nearest'),
            dict(type='TokenizeText', model_file=text_model, style='xlmr',
                 max_length=MAX_LEN, key='text'),
            dict(type='PackVLInputs',
                 algorithm_keys=['text_ids', 'text_padding_mask']),
        ]))))


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """Demo scenes (48 px) with a SentencePiece model, a random retrieval
    model saved as mmvlp saves it, and an official-format retrieval file
    made from torchscale's BEiT3 with random heads."""
    root = tmp_path_factory.mktemp('features')
    data = make_demo_with_spm(root / 'data', num_train=40, num_val=6)
    text_model = osp.join(data, 'text_spm.model')
    images = sorted(osp.join(data, 'images', 'val', f)
                    for f in os.listdir(osp.join(data, 'images', 'val')))
    torch.manual_seed(0)
    model = build_scoped(MODELS, dict(type='BEiT3Retrieval',
                                      backbone=dict(BACKBONE))).eval()
    with torch.no_grad():
        model.logit_scale.fill_(2.5)
    mmvlp_file = str(root / 'retrieval.pth')
    save_checkpoint(dict(meta=dict(iter=1),
                         state_dict=weights_to_cpu(model.state_dict())),
                    mmvlp_file)
    reference = build_reference(TINY, img_size=SIZE, seed=3)
    heads = {'vision_head.weight': torch.randn(64, 64) * .1,
             'language_head.weight': torch.randn(64, 64) * .1,
             'logit_scale': torch.tensor(3.0)}
    official_file = str(root / 'official_retrieval.pth')
    torch.save(official_checkpoint(reference, 'model', heads), official_file)
    return dict(root=root, data=data, cfg=_cfg(text_model), images=images,
                model=model, mmvlp_file=mmvlp_file, reference=reference,
                heads=heads, official_file=official_file,
                tokenizer=TextTokenizer(text_model, 'xlmr', MAX_LEN))


def _pixels(paths):
    """What both sides' preprocessing gives: RGB, (x - 127.5) / 127.5 (the
    scenes are already 48 x 48)."""
    images = [mmcv.imread(p, channel_order='rgb') for p in paths]
    return (torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
            - 127.5) / 127.5


def _close(actual, expected, atol=1e-5):
    np.testing.assert_allclose(np.asarray(actual),
                               expected.detach().numpy(), atol=atol,
                               rtol=1e-4)


def _masked_mean(hidden, padding):
    keep = (~padding).float().unsqueeze(-1)
    return (hidden * keep).sum(1) / keep.sum(1)


def test_features_are_the_models_own_outputs(tiny):
    """Every feature equals what the backbone and the retrieval model give
    for the same inputs: forward_sequence, the featmap / avg_featmap
    outputs of BEiT3.forward, encode_image / encode_text; batching (and so
    text padding) does not change them."""
    extractor = FeatureExtractor(tiny['cfg'], tiny['mmvlp_file'])
    assert extractor.has_retrieval_heads
    model, paths = tiny['model'], tiny['images'][:3]
    pixels = _pixels(paths)
    ids, padding = tiny['tokenizer'](TEXTS)
    with torch.no_grad():
        image_hidden = model.backbone.forward_sequence(images=pixels)
        text_hidden = model.backbone.forward_sequence(
            text_ids=ids, text_padding_mask=padding)
        pair_hidden = model.backbone.forward_sequence(
            images=pixels, text_ids=ids, text_padding_mask=padding)
        maps = {}
        for out_type in ('featmap', 'avg_featmap'):
            backbone = BEiT3(**{k: v for k, v in BACKBONE.items()
                                if k != 'type'}, out_type=out_type).eval()
            backbone.load_state_dict(model.backbone.state_dict())
            maps[out_type] = backbone(pixels)[0]
        image_embed = model.encode_image(pixels)
        text_embed = model.encode_text(ids, padding)

    images = extractor(paths, batch_size=2, return_tokens=True)
    for i, feats in enumerate(images):
        _close(feats['image_cls'], image_hidden[i, 0])
        _close(feats['image_mean'], maps['avg_featmap'][i])
        _close(feats['patch_map'], maps['featmap'][i])
        assert feats['patch_map'].shape == (64, 3, 3)
        _close(feats['image_embed'], image_embed[i])
        _close(feats['image_tokens'], image_hidden[i])
    texts = extractor(texts=TEXTS, batch_size=1, return_tokens=True)
    for i, feats in enumerate(texts):
        _close(feats['text_cls'], text_hidden[i, 0])
        _close(feats['text_mean'], _masked_mean(text_hidden, padding)[i])
        _close(feats['text_embed'], text_embed[i])
        length = int((~padding[i]).sum())
        _close(feats['text_tokens'], text_hidden[i, :length])
    assert np.linalg.norm(texts[0]['text_embed']) == pytest.approx(1, 1e-5)
    pairs = extractor(paths, texts=TEXTS, batch_size=3, return_tokens=True)
    pair_padding = torch.cat([torch.zeros(3, 10, dtype=torch.bool), padding],
                             1)
    for i, feats in enumerate(pairs):
        _close(feats['fused_image_cls'], pair_hidden[i, 0])
        _close(feats['fused_text_cls'], pair_hidden[i, 10])
        _close(feats['fused_mean'], _masked_mean(pair_hidden,
                                                 pair_padding)[i])
        _close(feats['image_cls'], image_hidden[i, 0])
        _close(feats['text_embed'], text_embed[i])
        assert feats['fused_tokens'].shape[0] == 10 + int(
            (~padding[i]).sum())
    with pytest.raises(ValueError, match='one text per image'):
        extractor(paths, texts=TEXTS[:2])


def test_pretraining_checkpoint_gives_backbone_features_only(tiny, tmp_path):
    """A checkpoint without retrieval heads (mmvlp pretraining) loads its
    backbone through the standard route and gives no retrieval embeddings;
    zero-shot refuses it, naming what it needs."""
    from helpers.transfer import demo_pretrain_checkpoint
    checkpoint = str(tmp_path / 'pretrain.pth')
    backbone_state = demo_pretrain_checkpoint(checkpoint)
    cfg = Config.fromfile(osp.join(
        REPO, 'configs/demo/beit3-tiny-p8_demo-vl-retrieval.py'))
    cfg.test_dataloader.dataset.pipeline[2].model_file = \
        tiny['tokenizer'].model_file
    extractor = FeatureExtractor(cfg, checkpoint)
    assert not extractor.has_retrieval_heads
    feats = extractor(tiny['images'][:2], batch_size=2)
    assert 'image_embed' not in feats[0]
    for key, value in backbone_state.items():
        assert torch.equal(extractor.model.backbone.state_dict()[key], value)
    with pytest.raises(ValueError, match='no retrieval heads'):
        ZeroShotClassificationInferencer(cfg, checkpoint, classes=CLASSES)


def _official_embeddings(tiny, pixels, texts):
    """Image / text embeddings computed with torchscale's BEiT3 (the
    official model) and the file's heads, as the official
    BEiT3ForRetrieval computes them."""
    reference, heads = tiny['reference'], tiny['heads']
    ids, padding = tiny['tokenizer'](texts)
    with torch.no_grad():
        image = reference(textual_tokens=None,
                          visual_tokens=pixels)['encoder_out'][:, 0]
        text = reference(textual_tokens=ids, visual_tokens=None,
                         text_padding_position=padding)[
                             'encoder_out'][:, 0]
    return (F.normalize(image @ heads['vision_head.weight'].t(), dim=-1),
            F.normalize(text @ heads['language_head.weight'].t(), dim=-1))


def _hand_zero_shot(tiny, pixels, names=CLASSES):
    """Zero-shot scores by hand from the official model's embeddings: the
    class embedding is the normalised mean of its normalised prompt
    embeddings; scores are softmax(exp(logit_scale) * cos)."""
    prompts = [t.format(c) for c in names for t in TEMPLATES]
    image, text = _official_embeddings(tiny, pixels, prompts)
    classes = []
    for k in range(len(names)):
        rows = text[k * len(TEMPLATES):(k + 1) * len(TEMPLATES)]
        mean = sum(r / r.norm() for r in rows) / len(TEMPLATES)
        classes.append(mean / mean.norm())
    logits = tiny['heads']['logit_scale'].exp() * image @ torch.stack(
        classes).t()
    return torch.softmax(logits, dim=-1)


def test_official_retrieval_file_features_and_zero_shot(tiny):
    """An official retrieval file as downloaded ({'model': {'beit3.*',
    'vision_head.weight', ...}}) gives the official model's embeddings,
    and zero-shot scores equal the hand computation, through the inferencer
    and through tools/test.py's route (load_from into ZeroShotClassifier)."""
    paths = tiny['images']
    pixels = _pixels(paths)
    image_embed, text_embed = _official_embeddings(tiny, pixels, TEXTS)
    extractor = FeatureExtractor(tiny['cfg'], tiny['official_file'])
    assert extractor.has_retrieval_heads
    for i, feats in enumerate(extractor(paths[:3], texts=TEXTS,
                                        batch_size=2)):
        _close(feats['image_embed'], image_embed[i], atol=1e-4)
        _close(feats['text_embed'], text_embed[i], atol=1e-4)

    expected = _hand_zero_shot(tiny, pixels)
    classify = ZeroShotClassificationInferencer(
        tiny['cfg'], tiny['official_file'], classes=CLASSES,
        templates=TEMPLATES)
    results = classify(paths, batch_size=4, topk=3)
    for result, row in zip(results, expected):
        _close(result['pred_scores'], row, atol=1e-4)
        assert result['pred_class'] == CLASSES[int(row.argmax())]
        assert [c for c, _ in result['topk']] == [
            CLASSES[int(i)] for i in row.topk(3).indices]
        assert result['topk'][0][1] == pytest.approx(float(row.max()),
                                                     abs=1e-4)

    # tools/test.py: cfg.load_from -> mmengine's load_checkpoint into the
    # ZeroShotClassifier, which takes the encoder's (official) file.
    model = build_scoped(MODELS, zero_shot_cfg(tiny['cfg'], CLASSES,
                                               TEMPLATES)).eval()
    load_checkpoint(model, tiny['official_file'], strict=True,
                    logger='silent')
    with torch.no_grad():
        samples = model(pixels, mode='predict')
        logits = model(pixels, mode='tensor')
    for sample, row in zip(samples, expected):
        _close(sample.pred_score, row, atol=1e-4)
    _close(logits.softmax(-1), expected, atol=1e-4)
    with pytest.raises(ValueError, match='not trained'):
        model(pixels, mode='loss')


def test_converted_official_file(tiny, tmp_path):
    """A file of tools/model_converters/beit3_unilm_to_mmvlp.py (backbone
    and retrieval heads in state_dict) gives the official embeddings and
    loads into the zero-shot classifier with its heads; a file of the
    earlier converter (heads aside under task_heads) still gives the
    embeddings through the extractor, and load_from, which only sees
    state_dict, refuses to classify with random heads."""
    from mmvlp.models.converters import (convert_unilm_beit3,
                                         map_official_beit3,
                                         unwrap_checkpoint)
    weights = unwrap_checkpoint(torch.load(tiny['official_file']))
    mapping = map_official_beit3(weights)
    converted = str(tmp_path / 'converted.pth')
    torch.save(dict(state_dict=mapping.state_dict,
                    meta=dict(task=mapping.task)), converted)
    paths = tiny['images'][:2]
    image_embed, _ = _official_embeddings(tiny, _pixels(paths), TEXTS[:2])
    extractor = FeatureExtractor(tiny['cfg'], converted)
    assert extractor.has_retrieval_heads
    for feats, expected in zip(extractor(paths), image_embed):
        _close(feats['image_embed'], expected, atol=1e-4)
    model = build_scoped(MODELS, zero_shot_cfg(tiny['cfg'], CLASSES))
    load_checkpoint(model, converted, logger='silent')
    for name, value in tiny['heads'].items():
        _close(dict(model.encoder.named_parameters())[name].detach(), value,
               atol=0)

    # The earlier converter's layout: heads aside under task_heads.
    backbone, _ = convert_unilm_beit3(weights, layout='decoupled')
    aside = {k: v for k, v in weights.items() if k in tiny['heads']}
    assert set(aside) == set(tiny['heads'])
    legacy = str(tmp_path / 'legacy.pth')
    torch.save(dict(state_dict=backbone, task_heads=aside), legacy)
    extractor = FeatureExtractor(tiny['cfg'], legacy)
    assert extractor.has_retrieval_heads
    for feats, expected in zip(extractor(paths), image_embed):
        _close(feats['image_embed'], expected, atol=1e-4)
    model = build_scoped(MODELS, zero_shot_cfg(tiny['cfg'], CLASSES))
    with pytest.raises(ValueError, match='task_heads'):
        load_checkpoint(model, legacy, logger='silent')


def test_zero_shot_classifier_checks_and_caches(tiny):
    """Templates and class sets are checked; class embeddings are cached
    and recomputed after set_classes and after loading weights."""
    model = ZeroShotClassifier(
        encoder=dict(type='BEiT3Retrieval', backbone=dict(BACKBONE)),
        tokenizer=dict(model_file=tiny['tokenizer'].model_file,
                       max_length=MAX_LEN),
        classes=CLASSES, templates=TEMPLATES).eval()
    first = model.class_embeddings()
    assert first.shape == (4, 64)
    assert model.class_embeddings() is first
    model.set_classes(['red', 'blue'])
    assert model.class_embeddings().shape == (2, 64)
    load_checkpoint(model, tiny['mmvlp_file'], strict=True, logger='silent')
    assert model._class_embeds is None
    assert len(ZeroShotClassifier(
        encoder=model.encoder, tokenizer=model.tokenizer,
        classes='cifar10').classes) == 10
    with pytest.raises(ValueError, match='hold "{}" once'):
        model.set_classes(CLASSES, ['no placeholder'])
    with pytest.raises(ValueError, match='Unknown template set'):
        model.set_classes(CLASSES, 'nope')
    with pytest.raises(ValueError, match='lacks'):
        ZeroShotClassifier(encoder=model.encoder.backbone,
                           tokenizer=model.tokenizer)
    model.set_classes(None)
    with pytest.raises(ValueError, match='ZeroShotClassesHook'):
        model.class_embeddings()


def test_zero_shot_config_through_the_runner(tiny, tmp_path):
    """tools/test.py's route: the demo zero-shot config (ZeroShotClassifier,
    mmpretrain CustomDataset and Accuracy) with an official retrieval file
    as load_from; ZeroShotClassesHook takes the class names from the
    dataset; top-1 / top-5 equal the hand computation's."""
    from mmengine.runner import Runner

    from mmvlp.datasets.demo_classification import largest_attribute
    from mmvlp.datasets.demo_data import COLORS
    names = list(COLORS)
    with open(osp.join(tiny['data'], 'captions_val.jsonl')) as f:
        rows = [json.loads(line) for line in f]
    labelled = [(r['image'], names.index(c)) for r in rows
                if (c := largest_attribute(r['content_words'], 'color'))]
    ann = tmp_path / 'cls_val.txt'
    ann.write_text(''.join(f'{image} {label}\n' for image, label in labelled))
    cfg = Config.fromfile(osp.join(
        REPO, 'configs/zero_shot/beit3-tiny-p8_demo-zero-shot-colors.py'))
    cfg.model.encoder.backbone = dict(BACKBONE)
    cfg.model.tokenizer.model_file = tiny['tokenizer'].model_file
    cfg.model.tokenizer.max_length = MAX_LEN  # long prompts are truncated
    cfg.model.classes = None
    cfg.model.templates = TEMPLATES
    cfg.model.data_preprocessor.mean = cfg.model.data_preprocessor.std = [
        127.5] * 3
    cfg.custom_hooks = [dict(type='mmvlp.ZeroShotClassesHook')]
    cfg.test_dataloader.dataset.data_root = tiny['data']
    cfg.test_dataloader.dataset.ann_file = str(ann)
    cfg.test_dataloader.dataset.metainfo = dict(
        classes=[f'{n}_color, other words' for n in names])
    cfg.work_dir = str(tmp_path / 'work')
    cfg.load_from = tiny['official_file']
    runner = Runner.from_cfg(cfg)
    metrics = runner.test()
    assert runner.model.classes == tuple(f'{n} color' for n in names)

    scores = _hand_zero_shot(
        tiny, _pixels([osp.join(tiny['data'], i) for i, _ in labelled]),
        [f'{n} color' for n in names])
    labels = torch.tensor([label for _, label in labelled])
    top5 = scores.topk(5, dim=1).indices
    assert metrics['accuracy/top1'] == pytest.approx(
        100 * float((scores.argmax(1) == labels).float().mean()), abs=1e-3)
    assert metrics['accuracy/top5'] == pytest.approx(
        100 * float((top5 == labels[:, None]).any(1).float().mean()),
        abs=1e-3)


def test_knn_precision_by_hand():
    """knn_precision: cosine neighbours, the query itself excluded;
    knn_chance: (n_label - 1) / (N - 1) on average."""
    from mmvlp.evaluation import knn_chance, knn_precision
    features = np.array([[1., 0.], [.9, .1], [0., 1.], [.1, .9], [1., .05]])
    labels = ['a', 'a', 'b', 'b', 'b']
    # Nearest others: 0 -> 4, 1 -> 4 (then 0), 2 -> 3, 3 -> 2, 4 -> 0.
    assert knn_precision(features, labels, 1) == pytest.approx(
        (0 + 0 + 1 + 1 + 0) / 5)
    # Two nearest: 0 -> {4, 1}, 1 -> {4, 0}, 2 -> {3, 1}, 3 -> {2, 1},
    # 4 -> {0, 1}.
    assert knn_precision(features, labels, 2) == pytest.approx(
        (1 + 1 + 1 + 1 + 0) / 10)
    assert knn_chance(labels) == pytest.approx((1 / 4 * 2 + 2 / 4 * 3) / 5)
    with pytest.raises(ValueError, match='k must be'):
        knn_precision(features, labels, 5)


def _tool():
    spec = importlib.util.spec_from_file_location('extract_features', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_extract_features_tool_resumes_and_counts_bad_files(tiny, tmp_path):
    """A folder with an unreadable and an empty file: the good images are
    written (ids in order, the extractor's numbers), the two others are
    skipped and counted by reason; removing a shard and running again
    recomputes only it; captions in jsonl with an empty one; npy shards;
    the 2-D map."""
    folder = tmp_path / 'images'
    folder.mkdir()
    for path in tiny['images'][:5]:
        (folder / osp.basename(path)).write_bytes(open(path, 'rb').read())
    (folder / '00002_broken.png').write_bytes(b'not an image')
    (folder / '00004_empty.jpg').write_bytes(b'')
    out = tmp_path / 'feats'
    cfg_file = str(tmp_path / 'retrieval.py')
    tiny['cfg'].dump(cfg_file)
    args = [cfg_file, tiny['mmvlp_file'], '--data', str(folder), '--out',
            str(out), '--shard-size', '3', '--batch-size', '2']
    tool = _tool()
    assert tool.main(args) == 0
    meta = json.loads((out / 'meta.json').read_text())
    assert meta['written'] == 5 and meta['shards'] == 3
    assert meta['skipped'] == 2
    assert meta['skipped_by_reason'] == {'not_an_image': 1, 'empty_file': 1}
    assert meta['features'] == ['image_cls', 'image_mean', 'image_embed']
    shards = [dict(np.load(out / f'shard_{i:05d}.npz')) for i in range(3)]
    ids = np.concatenate([s['ids'] for s in shards]).tolist()
    good = sorted(str(folder / osp.basename(p)) for p in tiny['images'][:5])
    assert ids == good
    # Sorted paths: the broken file is in the second shard, the empty one
    # alone in the third.
    assert shards[1]['skipped'].tolist() == [str(folder /
                                                 '00002_broken.png')]
    assert shards[1]['skipped_reasons'].tolist() == ['not_an_image']
    assert len(shards[2]['ids']) == 0 and shards[2]['skipped_reasons'].tolist(
    ) == ['empty_file']
    expected = FeatureExtractor(tiny['cfg'], tiny['mmvlp_file'])(good)
    written = np.concatenate([s['image_embed'] for s in shards])
    np.testing.assert_allclose(
        written, np.stack([e['image_embed'] for e in expected]), atol=1e-5)

    stamp = os.path.getmtime(out / 'shard_00000.npz')
    os.remove(out / 'shard_00001.npz')
    assert tool.main(args) == 0
    meta = json.loads((out / 'meta.json').read_text())
    assert meta['resumed_shards'] == 2 and meta['written'] == 5
    assert meta['skipped_by_reason'] == {'not_an_image': 1, 'empty_file': 1}
    assert os.path.getmtime(out / 'shard_00000.npz') == stamp
    np.testing.assert_allclose(np.load(out / 'shard_00001.npz')['image_cls'],
                               shards[1]['image_cls'], atol=1e-6)

    captions = tmp_path / 'captions.jsonl'
    captions.write_text('\n'.join(json.dumps(r) for r in [
        dict(id='a', caption=TEXTS[0], color='red'),
        dict(id='b', caption='   ', color='blue'),
        dict(id='c', caption=TEXTS[1], color='blue'),
        dict(id='d', caption=TEXTS[2], color='green')]) + '\n')
    text_out = tmp_path / 'text_feats'
    assert tool.main([cfg_file, tiny['mmvlp_file'], '--data', str(captions),
                      '--out', str(text_out), '--format', 'npy',
                      '--shard-size', '2', '--map', str(tmp_path / 'map.png'),
                      '--label-field', 'color']) == 0
    meta = json.loads((text_out / 'meta.json').read_text())
    assert meta['kind'] == 'text' and meta['written'] == 3
    assert meta['skipped_by_reason'] == {'empty_caption': 1}
    assert meta['skipped_ids'] == ['b']
    assert np.load(text_out / 'shard_00000' / 'ids.npy').tolist() == ['a']
    embeds = np.concatenate([np.load(text_out / f'shard_0000{i}' /
                                     'text_embed.npy') for i in range(2)])
    ids, padding = tiny['tokenizer']([TEXTS[0], TEXTS[1], TEXTS[2]])
    with torch.no_grad():
        reference = tiny['model'].encode_text(ids, padding)
    np.testing.assert_allclose(embeds, reference.numpy(), atol=1e-5)
    assert (tmp_path / 'map.png').stat().st_size > 1000


def test_config_names():
    """Inferencers take mmvlp config names as well as paths."""
    from mmvlp.apis import list_models
    from mmvlp.apis.encoder_models import load_config
    assert 'beit3-tiny-p8_demo-zero-shot-colors' in list_models('*zero-shot*')
    cfg = load_config('beit3-tiny-p8_demo-vl-retrieval')
    assert cfg.model.type == 'BEiT3Retrieval'
    with pytest.raises(FileNotFoundError, match='similar names'):
        load_config('beit3-tiny-p8_demo-vl-retrieva')
    # A zero-shot config's encoder normalises images as the classifier.
    from mmvlp.apis.encoder_models import dual_encoder_cfg
    encoder = dual_encoder_cfg(load_config(
        'beit3-tiny-p8_demo-zero-shot-colors'))
    assert encoder['data_preprocessor']['mean'] == [123.675, 116.28, 103.53]
    assert encoder['backbone']['init_cfg'] is None
