"""Resizing the vision position table against the official rule, on square
and non-square grids in both directions, and loading tables of non-square
grids.

The official rule (unilm ``beit3/utils.py::load_model_and_may_interpolate``,
as DeiT / BEiT / timm): the leading rows that are not patch positions are
kept as they are (torchscale's table: the 2 fairseq offset rows and the CLS
row), the patch rows are read row-major as an ``(h, w)`` image and resized
with ``F.interpolate(mode='bicubic', align_corners=False)``. The official
code only knows square grids; the same rule with ``(h, w)`` is what timm's
``resample_abs_pos_embed`` does for any grid (without its antialiasing).
"""
import tempfile

import pytest
import torch
import torch.nn.functional as F
from helpers.reference import TINY, build_reference, official_checkpoint
from mmengine.config import Config
from mmengine.runner.checkpoint import save_checkpoint

from mmvlp.models import BEiT3
from mmvlp.models.backbones.beit3_checkpoint import (load_pretrained_beit3,
                                                     saved_patch_grid)
from mmvlp.models.layers import resize_pos_embed

ARCH = dict(embed_dims=32, num_layers=1, num_heads=2, feedforward_channels=64)
TEXT = dict(vocab_size=50, max_text_len=8, text_mask_token_id=49)


def official_rule(table: torch.Tensor, src, dst, extra: int) -> torch.Tensor:
    """``(rows, C)``: keep ``extra`` rows, resize the rest as an image."""
    dims = table.shape[-1]
    patches = table[extra:].reshape(1, src[0], src[1], dims).permute(
        0, 3, 1, 2)
    patches = F.interpolate(patches, size=tuple(dst), mode='bicubic',
                            align_corners=False)
    return torch.cat([table[:extra],
                      patches.permute(0, 2, 3, 1).reshape(-1, dims)])


GRIDS = [((4, 4), (6, 6)), ((6, 6), (3, 3)),  # square, up and down
         ((4, 6), (6, 9)), ((6, 9), (3, 4)),  # non-square, up and down
         ((3, 5), (5, 3)), ((2, 7), (4, 4))]  # aspect changes


@pytest.mark.parametrize('src,dst', GRIDS)
def test_resize_pos_embed_follows_the_official_rule(src, dst):
    torch.manual_seed(0)
    table = torch.randn(1, 1 + src[0] * src[1], 8)
    got = resize_pos_embed(table, src, dst)
    assert got.shape == (1, 1 + dst[0] * dst[1], 8)
    torch.testing.assert_close(got[0], official_rule(table[0], src, dst, 1))
    assert torch.equal(got[0, 0], table[0, 0])  # the CLS row is kept


@pytest.mark.parametrize('src,dst', GRIDS)
def test_resize_keeps_rows_and_columns_apart(src, dst):
    """A table whose channel 0 is the row and channel 1 the column of each
    patch: after resizing, channel 0 is constant along every row and grows
    down the rows, channel 1 constant down every column and grows along
    the rows (a swap of height and width breaks both)."""
    rows, cols = torch.meshgrid(torch.arange(src[0]), torch.arange(src[1]),
                                indexing='ij')
    table = torch.stack([rows.flatten(), cols.flatten()], -1).float()
    table = torch.cat([torch.full((1, 2), -5.), table])[None]
    out = resize_pos_embed(table, src, dst)[0, 1:].reshape(*dst, 2)
    row_of, col_of = out[..., 0], out[..., 1]
    assert torch.allclose(row_of, row_of[:, :1].expand_as(row_of), atol=1e-5)
    assert torch.allclose(col_of, col_of[:1].expand_as(col_of), atol=1e-5)
    assert (row_of[1:, 0] - row_of[:-1, 0] > 0).all()
    assert (col_of[0, 1:] - col_of[0, :-1] > 0).all()


@pytest.mark.parametrize('src_size,dst_size', [(32, 64), (64, 48)])
def test_official_checkpoint_resized_as_unilm_does(src_size, dst_size):
    """An official file (torchscale keys, 2 offset rows + CLS + patches)
    loaded into a BEiT3 of another size gives the table the official
    fine-tuning code computes (offset rows dropped by the conversion)."""
    reference = build_reference(TINY, img_size=src_size, patch_size=16)
    state = official_checkpoint(reference, 'model')['model']
    table = state['beit3.encoder.embed_positions.A.weight']
    src, dst = (src_size // 16, ) * 2, (dst_size // 16, ) * 2
    assert table.shape[0] == 3 + src[0] * src[1]
    expected = official_rule(table, src, dst, extra=3)[2:]
    model = BEiT3(arch=TINY, img_size=dst_size, patch_size=16)
    with tempfile.TemporaryDirectory() as folder:
        path = f'{folder}/official.pth'
        torch.save(dict(model=state), path)
        load_pretrained_beit3(model, path)
    torch.testing.assert_close(model.pos_embed_vision.data[0], expected)


def _backbone(img_size, seed=0):
    torch.manual_seed(seed)
    return BEiT3(arch=ARCH, img_size=img_size, patch_size=8, **TEXT)


def _runner_checkpoint(path, source, img_size):
    """Saved as mmengine's Runner saves: the config's text in meta."""
    cfg = Config(dict(model=dict(
        type='BEiT3Pretrain',
        backbone=dict(type='BEiT3', arch=ARCH, img_size=img_size,
                      patch_size=8, **TEXT))))
    state = {f'backbone.{k}': v for k, v in source.state_dict().items()}
    save_checkpoint(dict(meta=dict(cfg=cfg.pretty_text, iter=1),
                         state_dict=state), str(path))
    return str(path)


@pytest.mark.parametrize('src_size,dst_size,src,dst', [
    ((32, 48), (48, 72), (4, 6), (6, 9)),
    ((32, 48), (24, 32), (4, 6), (3, 4)),
    # 36 rows: a square count, but the saved config says 4x9, not 6x6.
    ((32, 72), (48, 96), (4, 9), (6, 12)),
])
def test_non_square_grid_from_the_saved_config(tmp_path, src_size, dst_size,
                                               src, dst):
    source = _backbone(src_size)
    assert source.patch_grid == src
    path = _runner_checkpoint(tmp_path / 'iter_1.pth', source, src_size)
    assert saved_patch_grid(torch.load(path, weights_only=False),
                            'backbone.', 16) == src
    model = _backbone(dst_size, seed=1)
    model.init_cfg = dict(type='Pretrained', checkpoint=path,
                          prefix='backbone.')
    model.init_weights()
    expected = official_rule(source.pos_embed_vision.data[0], src, dst, 1)
    torch.testing.assert_close(model.pos_embed_vision.data[0], expected)
    torch.testing.assert_close(model.layers[0].ffn.vision.fc1.weight,
                               source.layers[0].ffn.vision.fc1.weight)


def test_non_square_grid_without_information_is_refused(tmp_path):
    source = _backbone((32, 48))  # 4x6: 24 patch rows
    path = str(tmp_path / 'plain.pth')
    torch.save(dict(state_dict={f'backbone.{k}': v for k, v in
                                source.state_dict().items()}), path)
    model = _backbone((48, 72))
    with pytest.raises(ValueError, match=r'24 patch rows.*pos_embed_grid'):
        load_pretrained_beit3(model, path, prefix='backbone.')
    with pytest.raises(ValueError, match='not a 5x5 grid'):
        load_pretrained_beit3(model, path, prefix='backbone.',
                              pos_embed_grid=(5, 5))
    # Named in init_cfg, the grid is used.
    model.init_cfg = dict(type='Pretrained', checkpoint=path,
                          prefix='backbone.', pos_embed_grid=(4, 6))
    model.init_weights()
    torch.testing.assert_close(
        model.pos_embed_vision.data[0],
        official_rule(source.pos_embed_vision.data[0], (4, 6), (6, 9), 1))


def test_saved_config_is_parsed_not_executed(tmp_path):
    marker = tmp_path / 'executed'
    text = ("model = dict(backbone=dict(img_size=(32, 48), patch_size=8, "
            f"x=open({str(marker)!r}, 'w')))")
    assert saved_patch_grid(dict(meta=dict(cfg=text)), 'backbone.',
                            16) == (4, 6)
    assert not marker.exists()
    assert saved_patch_grid(dict(meta=dict(cfg='model = 1')), 'backbone.',
                            16) is None
    assert saved_patch_grid(dict(state_dict={}), 'backbone.', 16) is None


def test_resize_on_demand_and_dynamic_sizes_use_the_same_rule():
    model = _backbone((32, 48))
    table = model.pos_embed_vision.data[0].clone()
    expected = official_rule(table, (4, 6), (3, 5), 1)
    model.dynamic_img_size = True
    tokens, grid = model._embed_images(torch.zeros(1, 3, 24, 40), None)
    assert grid == (3, 5)
    bias = model.patch_embed(torch.zeros(1, 3, 24, 40))[0][0]
    torch.testing.assert_close(tokens[0, 1:] - bias, expected[1:])
    model.resize_pos_embed((24, 40))
    torch.testing.assert_close(model.pos_embed_vision.data[0], expected)
