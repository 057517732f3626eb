"""What a checkpoint file is: problems of the file itself, and the kind of
weights it holds.

Two questions, asked before and after ``torch.load``:

* :func:`file_problem` -- is the path usable at all? A missing path, a
  directory (a DeepSpeed / FSDP checkpoint directory, a Hugging Face model
  folder such as QLIP's), an empty file, a text file (a Git LFS pointer, an
  HTML error page, JSON), a zip archive that is cut short or holds no torch
  pickle (``.npz``), a safetensors / HDF5 / gzip file. Each answer names the
  problem and its fix; :class:`CheckpointFileError` carries them as one
  line. :func:`load_error` turns what ``torch.load`` raises on such files
  (``KeyError: 101``, ``EOFError``, ``invalid load key``) into the same.
* :func:`summarize_checkpoint` -- what a loaded checkpoint holds: its
  top-level keys, the prefixes of its weight names and its apparent kind
  (official BEiT-3, converted, mmvlp pretraining or task model, DeepSpeed /
  FSDP, VQ-KD, BSQ-ViT / QLIP, a model of another library, not a
  checkpoint), with the way to use it (:attr:`CheckpointSummary.use`).

:mod:`mmvlp.checkpoint.fit` puts both into its messages.
"""
import json
import os
import os.path as osp
import re
import struct
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

import torch

__all__ = [
    'CheckpointError', 'CheckpointFileError', 'CheckpointNotFoundError',
    'CheckpointFitError', 'CheckpointSummary', 'file_problem',
    'check_checkpoint_file', 'load_error', 'summarize_checkpoint',
    'compact_keys', 'collapse_keys'
]

CONVERTER = 'tools/model_converters/beit3_unilm_to_mmvlp.py'
VQKD_CONVERTER = 'tools/model_converters/vqkd_to_mmvlp.py'
QLIP_CONVERTER = 'tools/model_converters/qlip_to_mmvlp.py'
CONSOLIDATE = 'tools/model_converters/consolidate_checkpoint.py'


class CheckpointError(ValueError):
    """A checkpoint that mmvlp refuses to load: the base of the errors
    that tools report in one message, without a traceback."""


class CheckpointFileError(CheckpointError, RuntimeError):
    """The file is not a usable checkpoint (missing, empty, text, cut short,
    a directory, another format). Also a ``RuntimeError``, as torch's own
    errors for unreadable files are."""


class CheckpointNotFoundError(CheckpointFileError, FileNotFoundError):
    """The checkpoint path does not exist."""


class CheckpointFitError(CheckpointError):
    """A checkpoint that does not fit the model it is loaded into."""


# ------------------------------------------------------------ file level
_DEEPSPEED_MODEL_STATES = 'model_states.pt'
_HF_WEIGHTS = ('model.safetensors', 'pytorch_model.bin',
               'model.safetensors.index.json', 'pytorch_model.bin.index.json')


def _directory_problem(path: str) -> Tuple[str, str, str]:
    """``(kind, problem, fix)`` of a directory given as a checkpoint."""
    names = os.listdir(path)
    if any(n.endswith(_DEEPSPEED_MODEL_STATES) for n in names):
        return ('deepspeed-dir', 'is a DeepSpeed checkpoint directory',
                f'consolidate it into one file (python {CONSOLIDATE} '
                f'{path} OUT.pth) or load it with the DeepSpeed config that '
                'wrote it')
    if 'rank0.pth' in names:
        return ('fsdp-dir', 'is an FSDP sharded checkpoint directory',
                f'consolidate it (tools/dist_run.sh N model_converters/'
                f'consolidate_checkpoint.py {path} OUT.pth --config CONFIG) '
                'or load it with the FSDP config that wrote it')
    if 'config.json' in names and any(n in names for n in _HF_WEIGHTS):
        try:
            with open(osp.join(path, 'config.json')) as file:
                config = json.load(file)
        except (OSError, ValueError):
            config = {}
        if isinstance(config, dict) and 'vision_config' in config and (
                'decoder_config' in config or 'qlip' in str(
                    config.get('model_type', '')).lower()):
            return ('qlip-dir', 'is a QLIP model folder (Hugging Face '
                    'layout)', f'convert it: python {QLIP_CONVERTER} {path} '
                    'OUT.pth (it prints the matching BSQViT config)')
        return ('hf-dir', 'is a Hugging Face model folder (config.json and '
                'weights), not an mmvlp checkpoint',
                'mmvlp converts the official BEiT-3, BEiT v2 (VQ-KD) and '
                'QLIP weights only (tools/model_converters/)')
    shown = ', '.join(sorted(names)[:5]) or 'nothing'
    return ('directory', f'is a directory (holding {shown}), not a '
            'checkpoint file', 'give the path of a .pth file')


def _text_kind(head: bytes) -> Optional[Tuple[str, str]]:
    """``(what, fix)`` when the first bytes are text."""
    try:
        text = head.decode('utf-8')
    except UnicodeDecodeError:
        return None
    if any(ord(c) < 9 or 13 < ord(c) < 32 for c in text):
        return None
    lower = text.lstrip().lower()
    if lower.startswith('version https://git-lfs'):
        return ('a Git LFS pointer, not the weights',
                'fetch the file itself (git lfs pull)')
    if lower.startswith(('<!doctype', '<html', '<?xml')):
        return ('an HTML/XML page (a failed download?)',
                'download the checkpoint again')
    if lower.startswith(('{', '[')):
        return ('a JSON/text file', 'give the weights file (.pth)')
    first = text.strip().splitlines()[0][:40] if text.strip() else ''
    return (f'a text file (it starts with {first!r})',
            'give the weights file (.pth), not a text file')


def file_problem(path) -> Optional[Tuple[str, str, str]]:
    """What makes ``path`` unusable as a checkpoint, read from the file
    system and the first bytes only (cheap; nothing is unpickled).

    Args:
        path (str | PathLike): A checkpoint path.

    Returns:
        tuple | None: ``(kind, problem, fix)``, e.g. ``('empty', 'is empty
        (0 bytes)', '...')``; None when the file may be a torch checkpoint
        (a complete zip with a pickle, a legacy pickle) or cannot be
        inspected (a URL).
    """
    if path is None or path == '':
        return ('none', 'is not given', 'name a checkpoint file')
    path = os.fspath(path)
    if '://' in path:
        return None
    if osp.basename(path) == 'last_checkpoint' and osp.isfile(path):
        # mmengine's pointer file stands for the checkpoint it names.
        from .files import follow_checkpoint_pointer
        try:
            path = follow_checkpoint_pointer(path)
        except FileNotFoundError as error:
            return ('missing', f'is a pointer to no checkpoint ({error})',
                    'point at a checkpoint file')
    if not osp.exists(path):
        where = '' if osp.isabs(path) else f' (relative to {os.getcwd()})'
        return ('missing', 'does not exist', f'check the path{where}')
    if osp.isdir(path):
        return _directory_problem(path)
    size = osp.getsize(path)
    if size == 0:
        return ('empty', 'is empty (0 bytes)',
                'a run killed while saving or a failed copy leaves such a '
                'file; use another checkpoint')
    with open(path, 'rb') as file:
        head = file.read(512)
    if head[:2] == b'PK':
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError) as error:
            return ('truncated', f'is cut short or corrupt ({error})',
                    'a run killed while saving leaves such a file when it '
                    'was written without mmvlp (mmvlp writes checkpoints '
                    'atomically); use an earlier checkpoint (tools/train.py '
                    '--resume without a path picks the newest complete one)')
        if not any(n.endswith('data.pkl') for n in names):
            what = 'a numpy .npz archive' if all(
                n.endswith('.npy') for n in names) else 'a zip archive'
            return ('not-checkpoint', f'is {what}, not a torch checkpoint '
                    '(no data.pkl in it)', 'give a .pth file')
        return None
    if head[:1] == b'\x80':  # a pickle (torch's legacy format)
        return None
    if len(head) >= 10 and head[8:9] == b'{':
        (length, ) = struct.unpack('<Q', head[:8])
        if 0 < length < size:
            return ('safetensors', 'is a safetensors file, which torch.load '
                    'does not read', f'QLIP weights: python {QLIP_CONVERTER}'
                    '; others: save safetensors.torch.load_file(PATH) with '
                    'torch.save')
    if head.startswith(b'\x89HDF'):
        return ('other-format', 'is an HDF5 file (Keras?), not a torch '
                'checkpoint', 'give a .pth file')
    if head.startswith(b'\x1f\x8b'):
        return ('other-format', 'is gzip-compressed', 'unpack it first')
    text = _text_kind(head)
    if text is not None:
        return ('text', f'is {text[0]}, not a checkpoint', text[1])
    return ('other-format', 'is not a torch checkpoint (neither a zip '
            f'archive nor a pickle: it starts with {head[:8]!r})',
            'give a .pth file written by torch.save')


def _file_message(path, problem: Tuple[str, str, str],
                  what: str = 'checkpoint') -> str:
    return f'The {what} {os.fspath(path)} {problem[1]}: {problem[2]}.'


def check_checkpoint_file(path, what: str = 'checkpoint',
                          allow_dirs: bool = False) -> None:
    """Raise a one-line :class:`CheckpointFileError` when ``path`` is not a
    usable checkpoint (see :func:`file_problem`).

    Args:
        path (str | PathLike): The checkpoint.
        what (str): How the message names it (``'checkpoint'``,
            ``'tokenizer_checkpoint'``).
        allow_dirs (bool): Accept DeepSpeed / FSDP checkpoint directories
            (runs with that strategy load them).
    """
    problem = file_problem(path)
    if problem is None or (allow_dirs and problem[0] in ('deepspeed-dir',
                                                         'fsdp-dir')):
        return
    error = CheckpointNotFoundError if problem[0] == 'missing' else \
        CheckpointFileError
    raise error(_file_message(path, problem, what))


def load_error(path, error: BaseException) -> Optional[CheckpointFileError]:
    """A one-line error for what ``torch.load`` raised on ``path``, or None
    when the file looks like a checkpoint (the error is then another one).

    ``torch.load`` answers a text file with ``KeyError`` (the first byte
    taken as a pickle opcode), an empty file with ``EOFError`` and a file cut
    short with ``RuntimeError``.
    """
    if not isinstance(path, (str, os.PathLike)):
        return None
    problem = file_problem(path)
    if problem is None:
        if isinstance(error, (KeyError, EOFError)) or 'invalid load key' in \
                str(error):
            problem = ('not-checkpoint', f'cannot be read by torch.load '
                       f'({type(error).__name__}: {error})',
                       'give a .pth file written by torch.save')
        else:
            return None
    cls = CheckpointNotFoundError if problem[0] == 'missing' else \
        CheckpointFileError
    return cls(f'Cannot load {os.fspath(path)}: the file {problem[1]}. Fix: '
               f'{problem[2]}.')


# ------------------------------------------------------------ key names
def compact_keys(keys: Iterable[str], limit: int = 12) -> str:
    """``layers.{0..11}.x`` style summary of key names."""
    groups: Dict[str, List[int]] = {}
    for key in sorted(keys):
        match = re.match(r'^(.*?layers\.)(\d+)(\..*)$', key)
        if match:
            pattern = match.group(1) + '{}' + match.group(3)
            groups.setdefault(pattern, []).append(int(match.group(2)))
        else:
            groups.setdefault(key, [])
    parts = []
    for pattern, indices in groups.items():
        if indices:
            idx = sorted(set(indices))
            span = (f'{idx[0]}..{idx[-1]}' if len(idx) > 1 and
                    idx == list(range(idx[0], idx[-1] + 1)) else
                    ','.join(map(str, idx)))
            parts.append(pattern.format('{' + span + '}'))
        else:
            parts.append(pattern)
    more = f' (+{len(parts) - limit} more)' if len(parts) > limit else ''
    return ', '.join(parts[:limit]) + more


def collapse_keys(keys: Iterable[str], universe: Iterable[str],
                  limit: int = 8) -> str:
    """Name a subset of a model's keys by the smallest patterns: a subtree
    that is entirely in ``keys`` becomes ``name.*``, layer indices are
    folded (``backbone.layers.{0..3}.ffn.text.*``).

    Args:
        keys (Iterable[str]): The subset (e.g. keys that did not load).
        universe (Iterable[str]): All keys of the model.
        limit (int): Patterns shown before ``(+n more)``.
    """
    chosen, everything = set(keys), list(universe)
    children: Dict[str, set] = {}
    for key in everything:
        parts = key.split('.')
        for depth in range(1, len(parts)):
            children.setdefault('.'.join(parts[:depth]), set()).add(key)
    patterns = []
    covered: set = set()
    for key in sorted(chosen):
        if key in covered:
            continue
        parts = key.split('.')
        best = key
        for depth in range(1, len(parts)):
            node = '.'.join(parts[:depth])
            if children.get(node, set()) <= chosen:
                best = node + '.*'
                covered |= children[node]
                break
        covered.add(key)
        patterns.append(best)
    return compact_keys(patterns, limit)


# ------------------------------------------------------------ contents
@dataclass
class CheckpointSummary:
    """What a loaded checkpoint holds.

    Attributes:
        path (str, optional): Where it came from.
        kind (str): Short name, e.g. ``'official-beit3'``,
            ``'mmvlp-pretrain'``, ``'vqkd-official'``, ``'unknown'``.
        description (str): The kind in words.
        use (str): How files of this kind are used in mmvlp.
        top_keys (list): Top-level keys of the file.
        weights (dict): Tensor name -> shape of the weights found (under
            ``state_dict``, ``model`` or ``module``).
        container (str): Where the weights were (``'state_dict'``,
            ``'model'``, ``'module'`` or ``''`` for the file itself).
        notes (list): Other facts (a training checkpoint, wrapper names).
    """
    path: Optional[str]
    kind: str
    description: str
    use: str = ''
    top_keys: List[str] = field(default_factory=list)
    weights: Dict[str, Tuple[int, ...]] = field(default_factory=dict)
    container: str = ''
    notes: List[str] = field(default_factory=list)

    def prefixes(self, limit: int = 6) -> str:
        """``backbone.* (120), mim_head.* (2)``: first name parts with
        counts, most common first."""
        counts = Counter(k.split('.')[0] for k in self.weights)
        items = [(f'{p}.*' if any(k.startswith(p + '.') for k in
                                  self.weights) else p, n)
                 for p, n in counts.most_common()]
        shown = ', '.join(f'{p} ({n})' for p, n in items[:limit])
        more = f', +{len(items) - limit} more' if len(items) > limit else ''
        return shown + more

    def describe(self) -> str:
        """One sentence: kind, top-level keys, prefixes."""
        top = ', '.join(self.top_keys[:8]) + (
            ' ...' if len(self.top_keys) > 8 else '')
        where = f' under "{self.container}"' if self.container else ''
        count = len(self.weights)
        held = (f'{count} tensor{"s" if count > 1 else ""}{where} '
                f'({self.prefixes()})' if self.weights else 'no tensors')
        notes = ''.join(f'; {n}' for n in self.notes)
        return (f'{self.description}: top-level keys [{top}], {held}'
                f'{notes}')


def unwrap_weights(obj: dict) -> Tuple[dict, str]:
    """``(weights, container)``: the dict under ``state_dict`` / ``model`` /
    ``module`` (nested up to three deep) that holds tensors, and where."""
    state, container = obj, ''
    for _ in range(3):
        if any(isinstance(v, torch.Tensor) for v in state.values()):
            break
        for key in ('state_dict', 'model', 'module'):
            if isinstance(state.get(key), dict) and state[key]:
                state, container = state[key], (
                    f'{container}.{key}' if container else key)
                break
        else:
            break
    return state, container


_WRAPPERS = ('_fsdp_wrapped_module', '_checkpoint_wrapped_module',
             '_orig_mod')


def strip_wrappers(keys: List[str]) -> List[str]:
    """Key names without DDP / FSDP / checkpoint / compile wrapper parts."""
    out = []
    for key in keys:
        parts = [p for p in key.split('.') if p not in _WRAPPERS]
        if parts and parts[0] == 'module':
            parts = parts[1:]
        out.append('.'.join(parts))
    return out


def _has(keys, *prefixes: str) -> bool:
    return all(any(k.startswith(p) for k in keys) for p in prefixes)


#: (kind, test on the weight names, description, use).
_MMVLP_KINDS = (
    ('mmvlp-pretrain', lambda k: _has(k, 'backbone.patch_embed.',
                                      'mim_head.'),
     'an mmvlp BEiT-3 pretraining checkpoint (BEiT3Pretrain: backbone, '
     'mim_head, mlm_head)',
     "fine-tune from it: the task configs load its backbone with "
     "init_cfg=dict(type='Pretrained', checkpoint=..., prefix='backbone.'),"
     ' or load_from= in training (the task head starts fresh)'),
    ('mmvlp-vqa', lambda k: _has(k, 'backbone.', 'pooler.dense.'),
     'an mmvlp BEiT3VQA checkpoint', 'load it into a BEiT3VQA config'),
    ('mmvlp-nlvr2', lambda k: _has(k, 'backbone.', 'head.dense1.'),
     'an mmvlp BEiT3NLVR2 checkpoint', 'load it into a BEiT3NLVR2 config'),
    ('mmvlp-retrieval', lambda k: _has(k, 'backbone.', 'vision_head.'),
     'an mmvlp BEiT3Retrieval checkpoint',
     'load it into a BEiT3Retrieval config'),
    ('mmvlp-captioning', lambda k: _has(k, 'backbone.', 'mlm_head.fc.'),
     'an mmvlp BEiT3Captioner checkpoint',
     'load it into a BEiT3Captioner config'),
    ('classifier', lambda k: _has(k, 'backbone.', 'head.fc.'),
     'an image classifier checkpoint (backbone + head.fc)',
     'load it into the classifier config that wrote it'),
    ('beit3-backbone', lambda k: _has(k, 'patch_embed.proj.', 'layers.0.'),
     'a bare BEiT3 backbone (keys without "backbone.", as the converter '
     'writes for --task backbone)',
     "load it through the backbone's init_cfg (model.backbone.init_cfg="
     "dict(type='Pretrained', checkpoint=...)), or convert the official "
     f"file again with --prefix backbone. for load_from ({CONVERTER})"),
    ('mmvlp-vqkd', lambda k: _has(k, 'quantizer.codebook', 'encoder.'),
     'an mmvlp VQ-KD tokenizer checkpoint',
     'use it as tokenizer_checkpoint of BEiT3Pretrain or with '
     'tools/tokenize_images.py and a VQKD config'),
    ('mmvlp-bsqvit', lambda k: _has(k, 'encoder.', 'pixel_head.'),
     'an mmvlp BSQ-ViT (QLIP) tokenizer checkpoint',
     'use it with a BSQViT config (tokenizer_checkpoint, '
     'tools/tokenize_images.py)'),
)
_OTHER_KINDS = (
    ('vqkd-official', lambda k: _has(k, 'encoder.blocks.', 'quantize.'),
     'an official BEiT v2 VQ-KD tokenizer (unilm beit2 keys)',
     f'convert it first: python {VQKD_CONVERTER} SRC DST'),
    ('vqkd-mmpretrain', lambda k: _has(k, 'encoder.layers.', 'quantize.'),
     'an mmpretrain VQ-KD tokenizer', f'convert it first: python '
     f'{VQKD_CONVERTER} SRC DST'),
    ('qlip', lambda k: _has(k, 'vision_model.') and (
        _has(k, 'vision_decoder.') or _has(k, 'text_model.')),
     'QLIP / CLIP-style weights in the Hugging Face layout (vision_model.*, '
     'text_model.*)', f'convert the QLIP model folder: python '
     f'{QLIP_CONVERTER} FOLDER OUT.pth'),
    ('timm-vit', lambda k: _has(k, 'blocks.0.', 'patch_embed.'),
     'a timm-style ViT (blocks.*, patch_embed.*), not a BEiT-3 or mmvlp '
     'model', 'mmvlp does not convert timm ViTs; use an mmvlp or official '
     'BEiT-3 file'),
    ('torchvision-resnet', lambda k: _has(k, 'layer1.0.conv1.'),
     'a torchvision-style ResNet', 'it fits ResNet configs, not BEiT-3'),
    ('hf-transformers', lambda k: any('embeddings.word_embeddings' in x
                                      for x in k),
     'a Hugging Face transformers text model', 'mmvlp does not read it'),
    ('open-clip', lambda k: _has(k, 'visual.', 'transformer.resblocks.'),
     'an OpenAI/open_clip CLIP model', 'mmvlp does not read it'),
    ('openmmlab-model', lambda k: _has(k, 'backbone.') and (
        _has(k, 'neck.') or _has(k, 'decode_head.') or _has(k, 'roi_head.')
        or _has(k, 'head.')), 'an OpenMMLab model checkpoint (backbone and '
     'heads)', 'load it into the config that wrote it'),
)


def _official_kind(weights: dict) -> Optional[Tuple[str, str, str]]:
    from .official_beit3 import OFFICIAL_TASKS, detect_task, is_official_beit3
    if not is_official_beit3(weights):
        return None
    try:
        task = detect_task(weights)
    except ValueError:
        task = 'several tasks'
    if task == 'backbone':
        what = 'a pretrained backbone, no task head'
        use = ("load it into a task model (the head starts fresh) or "
               "through the backbone's init_cfg; it converts with "
               f'{CONVERTER}')
    else:
        spec = OFFICIAL_TASKS.get(task)
        what = f'fine-tuned for {task}' + (
            f' ({spec.official}; mmvlp {spec.model_type})' if spec else '')
        use = (f'load it into a {spec.model_type.split(".")[-1]} config '
               '(tools/test.py CONFIG FILE converts it on the way)'
               if spec else f'choose the task with {CONVERTER} --task')
    return 'official-beit3', f'an official BEiT-3 file ({what})', use


def summarize_checkpoint(obj, path: Optional[str] = None
                         ) -> CheckpointSummary:
    """The kind and contents of a loaded checkpoint.

    Args:
        obj: What ``torch.load`` returned.
        path (str, optional): Where it was loaded from (for messages).

    Returns:
        CheckpointSummary: kind, description, how to use it, top-level keys
        and weight names.
    """
    path = None if path is None else os.fspath(path)
    if not isinstance(obj, dict):
        what = f'a pickled {type(obj).__name__}'
        if isinstance(obj, torch.Tensor):
            what += f' of shape {tuple(obj.shape)}'
        return CheckpointSummary(path, 'not-checkpoint',
                                 f'not a checkpoint ({what}, not a dict of '
                                 'weights)', 'give a file with a state dict')
    top = [str(k) for k in obj]
    state, container = unwrap_weights(obj)
    weights = {str(k): tuple(v.shape) for k, v in state.items()
               if isinstance(v, torch.Tensor)}
    notes = []
    if 'optimizer' in obj or 'message_hub' in obj:
        meta = obj.get('meta') if isinstance(obj.get('meta'), dict) else {}
        step = meta.get('iter', meta.get('epoch'))
        notes.append('a training checkpoint' + (
            f' (iteration/epoch {step})' if step is not None else ''))
    summary = CheckpointSummary(path, 'unknown', '', '', top, weights,
                                container, notes)
    if not weights:
        summary.kind = 'no-weights'
        summary.description = 'not a model checkpoint (a dict without tensors)'
        summary.use = 'give a file with a state dict'
        return summary
    names = list(weights)
    stripped = strip_wrappers(names)
    if any(p in n.split('.') for n in names for p in _WRAPPERS[:1]):
        notes.append('FSDP wrapper names (_fsdp_wrapped_module)')
    if container.endswith('module') and any(
            k in obj for k in ('ds_config', 'ds_version', 'buffer_names')):
        notes.append('DeepSpeed model states')
    empty = [n for n, s in weights.items() if 0 in s]
    if len(empty) > len(weights) // 2:
        summary.kind = 'deepspeed-zero3'
        summary.description = ('a DeepSpeed ZeRO-3 model-states file (its '
                               'weights are empty placeholders)')
        summary.use = (f'consolidate the checkpoint directory: python '
                       f'{CONSOLIDATE} DIR OUT.pth')
        return summary
    meta = obj.get('meta') if isinstance(obj.get('meta'), dict) else {}
    converted = meta.get('converted_from') or meta.get('consolidated_from')
    official = _official_kind(dict.fromkeys(stripped))
    if official is not None:
        summary.kind, summary.description, summary.use = official
        return summary
    for kind, test, description, use in _MMVLP_KINDS + _OTHER_KINDS:
        if test(stripped):
            summary.kind, summary.description, summary.use = \
                kind, description, use
            break
    else:
        summary.description = ('weights of no model mmvlp knows (no BEiT-3, '
                               'VQ-KD, QLIP or mmvlp names)')
        summary.use = ('check that this is the file you meant: mmvlp reads '
                       'its own checkpoints and the official BEiT-3, BEiT v2 '
                       'tokenizer and QLIP files')
    if converted and 'converted_from' in meta:
        summary.notes.append(f'converted from {meta["converted_from"]}'
                             + (f' ({meta["task"]})' if meta.get('task')
                                else ''))
    elif converted:
        summary.notes.append('consolidated by mmvlp')
    return summary
