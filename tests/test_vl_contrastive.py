"""Contrastive loss with negatives gathered across ranks (2 gloo processes
on CPU) against the same loss computed in one process."""
import os

import pytest
import torch
import torch.nn.functional as F

from helpers.ports import free_port
from mmvlp.models.heads import contrastive_loss, gather_with_grad

SIZES = {'equal': (3, 3), 'unequal': (3, 2)}


def _features(sizes):
    """The global batch: l2-normalised image and text rows."""
    generator = torch.Generator().manual_seed(0)
    total = sum(sizes)
    images = F.normalize(torch.randn(total, 8, generator=generator), dim=-1)
    texts = F.normalize(images + 0.5 * torch.randn(
        total, 8, generator=generator), dim=-1)
    return images, texts


def _worker(rank, world_size, port, out_dir):
    os.environ['OMP_NUM_THREADS'] = '1'
    torch.set_num_threads(1)
    import torch.distributed as dist
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}',
                            rank=rank, world_size=world_size)
    try:
        results = {}
        for name, sizes in SIZES.items():
            images, texts = _features(sizes)
            start = sum(sizes[:rank])
            rows = slice(start, start + sizes[rank])
            image = images[rows].clone().requires_grad_()
            text = texts[rows].clone().requires_grad_()
            scale = torch.tensor(2.).requires_grad_()
            loss = contrastive_loss(image, text, scale)
            loss.backward()
            gathered, offset = gather_with_grad(image.detach())
            results[name] = dict(loss=loss.detach(), image=image.grad,
                                 text=text.grad, scale=scale.grad,
                                 gathered=gathered, offset=offset)
        torch.save(results, os.path.join(out_dir, f'rank{rank}.pt'))
    finally:
        dist.destroy_process_group()


def _run_workers(fn, nprocs, args, timeout=90.):
    import time

    import torch.multiprocessing as mp
    method = 'fork' if 'fork' in mp.get_all_start_methods() else 'spawn'
    context = mp.start_processes(fn, args=args, nprocs=nprocs, join=False,
                                 start_method=method)
    deadline = time.monotonic() + timeout
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f'distributed workers did not finish in {timeout}s')


def _reference(sizes):
    """Each rank's loss and the gradients of their sum, in one process."""
    images, texts = _features(sizes)
    images.requires_grad_()
    texts.requires_grad_()
    scale = torch.tensor(2.).requires_grad_()
    logits = scale.exp() * images @ texts.t()
    labels = torch.arange(len(images))
    i2t = F.cross_entropy(logits, labels, reduction='none')
    t2i = F.cross_entropy(logits.t(), labels, reduction='none')
    losses, start = [], 0
    for size in sizes:
        rows = slice(start, start + size)
        losses.append((i2t[rows].mean() + t2i[rows].mean()) / 2)
        start += size
    sum(losses).backward()
    return [loss.detach() for loss in losses], images.grad, texts.grad, \
        scale.grad


def test_gathered_contrastive_loss_matches_one_process(tmp_path):
    _run_workers(_worker, 2, (2, free_port(), str(tmp_path)))
    ranks = [torch.load(tmp_path / f'rank{r}.pt') for r in range(2)]
    for name, sizes in SIZES.items():
        losses, image_grad, text_grad, scale_grad = _reference(sizes)
        start = 0
        for rank, size in enumerate(sizes):
            result = ranks[rank][name]
            rows = slice(start, start + size)
            # Each rank scores its rows against the whole global batch ...
            assert torch.allclose(result['loss'], losses[rank], atol=1e-6)
            # ... and its rows get the gradient of every rank's loss.
            assert torch.allclose(result['image'], image_grad[rows],
                                  atol=1e-6)
            assert torch.allclose(result['text'], text_grad[rows], atol=1e-6)
            assert result['offset'] == start
            assert torch.equal(result['gathered'], _features(sizes)[0])
            start += size
        # DDP sums (averages) the scale gradients of the ranks.
        assert torch.allclose(ranks[0][name]['scale'] +
                              ranks[1][name]['scale'], scale_grad, atol=1e-6)
    # With equal shares, the mean over ranks is the global batch's loss.
    images, texts = _features(SIZES['equal'])
    single = contrastive_loss(images, texts, torch.tensor(2.))
    mean = (ranks[0]['equal']['loss'] + ranks[1]['equal']['loss']) / 2
    assert torch.allclose(mean, single, atol=1e-6)


def test_contrastive_loss_single_process():
    images, texts = _features((4, ))
    scale = torch.tensor(2.)
    matched = contrastive_loss(images, texts, scale)
    shuffled = contrastive_loss(images, texts.roll(1, 0), scale)
    assert matched < shuffled
    assert torch.equal(gather_with_grad(images)[0], images)
    with pytest.raises(ValueError, match='pair up'):
        contrastive_loss(images, texts[:3], scale)


# Retrieval evaluation with ranks that hold different numbers of images and
# captions (and a padded sampler's repeated image), as on COCO's test split.
CAPTIONS = (2, 1, 2, 1, 3)  # captions of images 0..4


def _retrieval_model():
    from mmvlp.models.multimodal import BEiT3Retrieval
    torch.manual_seed(0)
    return BEiT3Retrieval(dict(
        type='BEiT3', arch=dict(embed_dims=16, num_layers=1, num_heads=2,
                                feedforward_channels=32),
        img_size=16, patch_size=8, vocab_size=16, max_text_len=8,
        text_mask_token_id=15))


def _retrieval_inputs(images):
    """Features and data samples of ``images`` (indices, repeats allowed),
    as RetrievalTestLoop hands them to predict_all."""
    from mmpretrain.structures import DataSample
    generator = torch.Generator().manual_seed(1)
    image_feats = F.normalize(torch.randn(len(CAPTIONS), 8,
                                          generator=generator), dim=-1)
    text_feats = F.normalize(torch.randn(sum(CAPTIONS), 8,
                                         generator=generator), dim=-1)
    first = [sum(CAPTIONS[:i]) for i in range(len(CAPTIONS))]
    samples, texts = [], []
    for image in images:
        ids = list(range(first[image], first[image] + CAPTIONS[image]))
        samples.append(DataSample(image_id=image, gt_text_id=ids,
                                  gt_image_id=[image] * len(ids)))
        texts += ids
    feats = dict(image_feat=image_feats[images], text_feat=text_feats[texts])
    return feats, samples


def _retrieval_metrics(images):
    """predict_all and mmpretrain's RetrievalRecall as RetrievalTestLoop
    runs them (collect_results cuts to the dataset sizes)."""
    from mmengine.evaluator import Evaluator
    from mmpretrain.evaluation import RetrievalRecall
    model = _retrieval_model()
    feats, samples = _retrieval_inputs(images)
    i2t, t2i = model.predict_all(feats, samples, num_images=len(CAPTIONS),
                                 num_texts=sum(CAPTIONS))
    evaluator = Evaluator([RetrievalRecall(topk=(1, 2))])
    evaluator.process(i2t, None)
    metrics = {f'i2t/{k}': v
               for k, v in evaluator.evaluate(len(CAPTIONS)).items()}
    evaluator.process(t2i, None)
    metrics.update({f't2i/{k}': v
                    for k, v in evaluator.evaluate(sum(CAPTIONS)).items()})
    return metrics, [s.image_id for s in i2t], [s.text_id for s in t2i]


def _retrieval_worker(rank, world_size, port, out_dir):
    os.environ['OMP_NUM_THREADS'] = '1'
    torch.set_num_threads(1)
    import torch.distributed as dist
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}',
                            rank=rank, world_size=world_size)
    try:
        # mmengine's DefaultSampler: rank 0 holds images 0, 2, 4 (5
        # captions), rank 1 images 1, 3 and image 0 again (4 captions).
        images = [0, 2, 4] if rank == 0 else [1, 3, 0]
        torch.save(_retrieval_metrics(images),
                   os.path.join(out_dir, f'retrieval{rank}.pt'))
    finally:
        dist.destroy_process_group()


def test_retrieval_with_uneven_captions_matches_one_process(tmp_path):
    _run_workers(_retrieval_worker, 2, (2, free_port(), str(tmp_path)))
    one, images, texts = _retrieval_metrics(list(range(len(CAPTIONS))))
    assert images == list(range(5)) and texts == list(range(9))
    rank0, images0, texts0 = torch.load(tmp_path / 'retrieval0.pt')
    _, images1, texts1 = torch.load(tmp_path / 'retrieval1.pt')
    # Each rank scores every second image and text of the whole set.
    assert (images0, images1) == ([0, 2, 4], [1, 3])
    assert (texts0, texts1) == ([0, 2, 4, 6, 8], [1, 3, 5, 7])
    assert rank0 == one
    assert 0 < one['i2t/retrieval/Recall@1'] < 100
    assert 0 < one['t2i/retrieval/Recall@2'] < 100
