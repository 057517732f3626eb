"""Layer-wise learning-rate decay for models with a BEiT-3 backbone.

mmseg's ``LayerDecayOptimizerConstructor`` picks its depth rules by backbone
class name (``BEiT``, ``MAE``, ``ConvNeXt``) and mmpretrain's needs the model
itself to have ``get_layer_depth``, which mmseg's and mmdet's models lack.
This constructor finds the backbone inside any model (an mmpretrain
``ImageClassifier``, an mmdet detector, an mmseg ``EncoderDecoder`` or a bare
``BEiT3``) and asks it for each parameter's depth.
"""
import logging
from collections import defaultdict
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor

from mmvlp.registry import OPTIM_WRAPPER_CONSTRUCTORS

#: Parameters (by the last part of their name) that BEiT fine-tuning never
#: decays: positions and the CLS / mask tokens.
NO_DECAY_NAMES = ('cls_token', 'mask_token', 'pos_embed')
PARAMWISE_KEYS = ('layer_decay_rate', 'backbone', 'no_decay_names',
                  'flat_decay_mult', 'custom_keys')


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Layer-wise learning-rate decay that understands the Multiway backbone.

    Each parameter gets a depth from the backbone's ``get_layer_depth``:
    embeddings (patch projection, CLS / mask tokens, positions, text table)
    are 0, ``layers.i`` (both its vision and text experts) is ``i + 1``, and
    the final norm and everything outside the backbone (necks, heads) is
    ``num_layers + 1``. Its learning rate is ``lr * layer_decay_rate **
    (num_layers + 1 - depth)``, as in BEiT-3's fine-tuning code. One-dimensional
    parameters (norms, biases), positions and the CLS / mask tokens get no
    weight decay. Parameters with the same depth and settings share one
    parameter group, the top layers' group first (so the logged ``lr`` is the
    peak learning rate); each group carries ``lr_scale`` and ``layer_depth``.
    Frozen parameters are left out.

    Use it from any mmpretrain, mmdet or mmseg config::

        custom_imports = dict(imports=['mmvlp.models', 'mmvlp.engine'],
                              allow_failed_imports=False)
        optim_wrapper = dict(
            optimizer=dict(type='AdamW', lr=7e-4, weight_decay=0.05),
            constructor='mmvlp.LayerDecayOptimWrapperConstructor',
            paramwise_cfg=dict(layer_decay_rate=0.65))

    ``paramwise_cfg`` keys:

    - ``layer_decay_rate`` (float, required): in (0, 1].
    - ``backbone`` (str, optional): dotted path of the backbone in the model
      (``'backbone'``). By default the model's only ``BEiT3`` is used; any
      module with ``get_layer_depth(name, prefix)`` works when named here.
    - ``no_decay_names`` (Sequence[str]): parameters whose own name starts
      with one of these get no weight decay. Defaults to
      ``('cls_token', 'mask_token', 'pos_embed')``.
    - ``flat_decay_mult`` (float): weight-decay multiplier of 1-D parameters.
      Defaults to 0.
    - ``custom_keys`` (dict): ``{substring: dict(lr_mult=..., decay_mult=...)}``
      applied on top, the longest matching key winning (as in mmengine).

    Args:
        optim_wrapper_cfg (dict): The optimizer-wrapper config (with
            ``optimizer``).
        paramwise_cfg (dict): See above.
    """

    def __init__(self,
                 optim_wrapper_cfg: dict,
                 paramwise_cfg: Optional[dict] = None) -> None:
        paramwise_cfg = dict(paramwise_cfg or {})
        if 'layer_decay_rate' not in paramwise_cfg:
            raise ValueError(
                'LayerDecayOptimWrapperConstructor needs paramwise_cfg='
                'dict(layer_decay_rate=...), e.g. 0.65 for BEiT-3 base and '
                '0.8 for large (BEiT-3 ImageNet fine-tuning).')
        unknown = sorted(set(paramwise_cfg) - set(PARAMWISE_KEYS))
        if unknown:
            raise ValueError(
                f'Unknown paramwise_cfg keys {unknown} for LayerDecayOptim'
                f'WrapperConstructor; valid keys: {list(PARAMWISE_KEYS)} '
                '(1-D parameters take flat_decay_mult; use custom_keys for '
                'anything else). With mmengine _base_ configs, set '
                'paramwise_cfg=dict(_delete_=True, ...) to drop inherited '
                'keys.')
        rate = paramwise_cfg['layer_decay_rate']
        if not isinstance(rate, (int, float)) or not 0 < rate <= 1:
            raise ValueError(f'layer_decay_rate must be in (0, 1], got '
                             f'{rate!r}.')
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        self.decay_rate = float(rate)
        self.backbone_path: Optional[str] = paramwise_cfg.get('backbone')
        self.no_decay_names: Tuple[str, ...] = tuple(
            paramwise_cfg.get('no_decay_names', NO_DECAY_NAMES))
        self.flat_decay_mult = float(paramwise_cfg.get('flat_decay_mult', 0.))
        self.custom_keys: Dict[str, dict] = dict(
            paramwise_cfg.get('custom_keys', {}))

    # ------------------------------------------------------------------
    def _find_backbone(self, model: nn.Module) -> Tuple[str, nn.Module]:
        """The backbone module and its parameter prefix in ``model``."""
        if self.backbone_path is not None:
            try:
                module = model.get_submodule(self.backbone_path)
            except AttributeError:
                raise ValueError(
                    f'paramwise_cfg.backbone={self.backbone_path!r} is not '
                    f'a submodule of {type(model).__name__}; top-level '
                    f'children: {[n for n, _ in model.named_children()]}.'
                ) from None
            if not hasattr(module, 'get_layer_depth'):
                raise ValueError(
                    f'{self.backbone_path!r} ({type(module).__name__}) has '
                    'no get_layer_depth(param_name, prefix); layer-wise decay '
                    'needs it.')
            prefix = f'{self.backbone_path}.' if self.backbone_path else ''
            return prefix, module
        from mmvlp.models.backbones.beit3 import BEiT3
        found = [(name, module) for name, module in model.named_modules()
                 if isinstance(module, BEiT3)]
        if len(found) != 1:
            what = ('no BEiT3' if not found else
                    f'{len(found)} BEiT3 modules '
                    f'({[n or "<model>" for n, _ in found]})')
            raise ValueError(
                f'LayerDecayOptimWrapperConstructor found {what} in '
                f'{type(model).__name__}; name the backbone with '
                "paramwise_cfg=dict(backbone='backbone', ...) (any module "
                'with get_layer_depth(param_name, prefix)).')
        name, module = found[0]
        return (f'{name}.' if name else ''), module

    def _custom(self, name: str) -> Optional[dict]:
        """The longest ``custom_keys`` entry contained in ``name``."""
        for key in sorted(sorted(self.custom_keys), key=len, reverse=True):
            if key in name:
                return self.custom_keys[key]
        return None

    def add_params(self,
                   params: List[dict],
                   module: nn.Module,
                   prefix: str = '',
                   **kwargs) -> None:
        """Fill ``params`` with one group per (depth, settings) of ``module``.

        Args:
            params (list[dict]): Parameter groups, extended in place.
            module (nn.Module): The whole model.
            prefix (str): Unused (the model is walked from its root).
        """
        backbone_prefix, backbone = self._find_backbone(module)
        get_depth: Callable = backbone.get_layer_depth
        num_layers = get_depth('', backbone_prefix)[1] - 2
        groups: Dict[tuple, dict] = {}
        frozen, seen = 0, set()
        for name, param in module.named_parameters():
            if id(param) in seen:
                continue
            seen.add(id(param))
            if not param.requires_grad:
                frozen += 1
                continue
            depth, total = get_depth(name, backbone_prefix)
            scale = self.decay_rate**(total - 1 - depth)
            decay_mult = 1.
            if param.ndim <= 1:
                decay_mult = self.flat_decay_mult
            if name.rsplit('.', 1)[-1].startswith(self.no_decay_names):
                decay_mult = 0.
            extra = {}
            custom = self._custom(name)
            if custom is not None:
                extra = dict(custom)
                scale *= extra.pop('lr_mult', 1.)
                decay_mult = extra.pop('decay_mult', decay_mult)
            group = dict(lr=self.base_lr * scale, lr_scale=scale,
                         layer_depth=depth, **extra)
            if self.base_wd is not None:
                group['weight_decay'] = self.base_wd * decay_mult
            key = (depth, ) + tuple(
                sorted((k, repr(v)) for k, v in group.items()))
            groups.setdefault(key, dict(params=[], **group))
            groups[key]['params'].append(param)
        ordered = sorted(groups.values(), key=lambda g: (
            -g['layer_depth'], -g.get('weight_decay', 0.)))
        params.extend(ordered)
        self._log_summary(ordered, type(backbone).__name__,
                          backbone_prefix.rstrip('.') or '<model>',
                          num_layers, frozen)

    def _log_summary(self, groups: Sequence[dict], backbone_type: str,
                     backbone_name: str, num_layers: int,
                     frozen: int) -> None:
        """One line per depth: scale, tensors and how many are decayed."""
        by_depth: Dict[int, List[dict]] = defaultdict(list)
        for group in groups:
            by_depth[group['layer_depth']].append(group)
        lines = [
            f'Layer-wise lr decay {self.decay_rate} over {backbone_name} '
            f'({backbone_type}, {num_layers} layers): {len(groups)} '
            f'parameter groups, {frozen} frozen tensors left out.',
            f'  {"depth":<6} {"lr_scale":<10} {"lr":<10} {"tensors":>8} '
            f'{"no_wd":>6} {"params":>11}'
        ]
        for depth in sorted(by_depth, reverse=True):
            part = by_depth[depth]
            tensors = sum(len(g['params']) for g in part)
            no_wd = sum(len(g['params']) for g in part
                        if not g.get('weight_decay', 0.))
            numel = sum(p.numel() for g in part for p in g['params'])
            lines.append(f'  {depth:<6} {part[0]["lr_scale"]:<10.4g} '
                         f'{part[0]["lr"]:<10.4g} {tensors:>8} {no_wd:>6} '
                         f'{numel:>11}')
        print_log('\n'.join(lines), logger='current', level=logging.INFO)


__all__ = ['LayerDecayOptimWrapperConstructor']
