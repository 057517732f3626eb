"""The README and docs/ pages: their config examples build and run, and every
link, repository path and ``make`` target they quote exists.

Paths quoted in backticks that start with one of the repository's folders
(``tools/``, ``configs/``, ``docs/``, ``mmvlp/``, ``benchmarks/``,
``tests/``) must exist (brace lists and ``*`` are expanded as a shell
would); outputs under ``work_dirs/`` and ``data/``, placeholders in
capitals (``benchmarks/X.py``) and paths completed by a shell variable are
exempt. Relative markdown links must point at a file and, with
``#anchor``, at one of its headings. ``make TARGET`` in code must be a
Makefile target.
"""
import glob
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))
README = osp.join(REPO, 'README.md')
PAGES = [README] + sorted(glob.glob(osp.join(REPO, 'docs', '*.md')))
FOLDERS = ('tools', 'configs', 'docs', 'mmvlp', 'benchmarks', 'tests')

#: A repository path inside a backtick span: starts at a folder name that
#: is not part of a longer path or a ``scope::`` reference.
PATH = re.compile(r'(?<![\w/:.-])((?:%s)/[\w./{},*-]*[\w*}])' %
                  '|'.join(FOLDERS))
#: A placeholder in a path (``benchmarks/X.py``, ``work_dirs/RUN/...``).
PLACEHOLDER = re.compile(r'(^|/)[A-Z][A-Z0-9_]*(\.\w+)?(/|$)')
#: ``make TARGET`` inside code (spans or blocks).
MAKE = re.compile(r'(?<![\w-])make ([a-z][\w-]*)')
LINK = re.compile(r'(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)')


def _code(text):
    """The text of all code blocks and backtick spans of a markdown page."""
    blocks = re.findall(r'```[^\n]*\n(.*?)```', text, re.S)
    rest = re.sub(r'```.*?```', '', text, flags=re.S)
    spans = re.findall(r'`([^`]+)`', rest, re.S)
    return blocks + spans


def _expand(pattern):
    """Shell brace expansion (nested too) of one pattern."""
    match = re.search(r'\{([^{}]*)\}', pattern)
    if match is None:
        return [pattern]
    head, tail = pattern[:match.start()], pattern[match.end():]
    return [p for alt in match.group(1).split(',')
            for p in _expand(head + alt + tail)]


def _exists(path):
    return all(glob.glob(osp.join(REPO, p)) for p in _expand(path))


def _slug(heading):
    """GitHub's anchor of a markdown heading."""
    text = re.sub(r'[^\w\- ]', '', heading.strip().lower())
    return text.replace(' ', '-')


def _anchors(path):
    text = re.sub(r'```.*?```', '', open(path).read(), flags=re.S)
    return {_slug(h) for h in re.findall(r'^#+ (.*)$', text, re.M)}


def _makefile_targets():
    text = open(osp.join(REPO, 'Makefile')).read()
    return set(re.findall(r'^([\w-]+):', text, re.M))


def broken_references(page):
    """Every quoted path, link and make target of ``page`` that does not
    exist, as readable strings."""
    text = open(page).read()
    name = osp.relpath(page, REPO)
    problems = []
    targets = _makefile_targets()
    for code in _code(text):
        for match in PATH.finditer(code):
            if code[match.end():match.end() + 1] == '$':
                continue  # completed by a shell variable
            path = match.group(1).rstrip('.')
            if PLACEHOLDER.search(path) is None and not _exists(path):
                problems.append(f'{name}: `{path}` does not exist')
        for target in MAKE.findall(code):
            if target not in targets:
                problems.append(f'{name}: `make {target}` is no Makefile '
                                'target')
    prose = re.sub(r'```.*?```', '', text, flags=re.S)
    for groups in LINK.findall(prose):
        link = groups[0] or groups[1]
        if re.match(r'[a-z]+:', link):  # http:, https:, mailto:
            continue
        file, _, anchor = link.partition('#')
        target = (osp.normpath(osp.join(osp.dirname(page), file))
                  if file else page)
        if not osp.exists(target):
            problems.append(f'{name}: link {link} points at nothing')
        elif anchor and target.endswith('.md') and \
                anchor not in _anchors(target):
            problems.append(f'{name}: link {link}: no heading #{anchor}')
    return problems


def test_pages_were_found():
    names = {osp.relpath(p, REPO) for p in PAGES}
    assert {'README.md', 'docs/README.md', 'docs/get_started.md',
            'docs/transfer.md'} <= names


@pytest.mark.parametrize('page', PAGES, ids=lambda p: osp.relpath(p, REPO))
def test_quoted_paths_links_and_make_targets_exist(page):
    assert broken_references(page) == []


def test_every_docs_page_is_in_the_index():
    index = open(osp.join(REPO, 'docs', 'README.md')).read()
    for page in PAGES[1:]:
        name = osp.basename(page)
        if name != 'README.md':
            assert f']({name})' in index, f'docs/{name} is not in the index'


def test_the_checker_finds_broken_references(tmp_path):
    page = tmp_path / 'page.md'
    page.write_text(
        '# Title\n\nSee [a](missing.md), [b](#title), [c](#nowhere),\n'
        '`tools/nothing_here.py`, `configs/beit3/*_nothing*.py`,\n'
        '`tools/dist_{train,nothing}.sh`, `make no-such-target`,\n'
        '`work_dirs/out/x.pth` (an output), `tools/train.py`,\n'
        '`mmdet::common/lsj-100e_coco-instance.py`, `make demo`.\n')
    problems = broken_references(str(page))
    assert len(problems) == 6, problems
    for needle in ('missing.md', '#nowhere', 'nothing_here.py',
                   '*_nothing*.py', 'dist_{train,nothing}.sh',
                   'no-such-target'):
        assert any(needle in p for p in problems), (needle, problems)


def _block(path, start):
    text = open(path).read()
    return re.search(r'```python\n(# my_project/configs/%s.*?)```' % start,
                     text, re.S).group(1)


def test_readme_mmpretrain_config(tmp_path):
    path = tmp_path / 'beit3-base_in1k.py'
    path.write_text(_block(README, 'beit3-base'))
    cfg = Config.fromfile(str(path))
    assert cfg.model.backbone.type == 'mmvlp.BEiT3'
    assert cfg.model.backbone.init_cfg.type == 'Pretrained'
    init_default_scope('mmpretrain')
    from mmpretrain.registry import MODELS
    model = MODELS.build(cfg.model).eval()
    assert type(model.backbone).__name__ == 'BEiT3'
    assert model.backbone.text_embed is None  # vision_only
    with torch.no_grad():
        scores = model(torch.randn(1, 3, 224, 224), mode='tensor')
    assert scores.shape == (1, 1000)


def test_transfer_page_mmseg_config(tmp_path):
    block = _block(osp.join(REPO, 'docs', 'transfer.md'), 'upernet')
    path = tmp_path / 'upernet_beit3-base_ade20k.py'
    path.write_text(block)
    cfg = Config.fromfile(str(path))
    assert cfg.model.backbone.type == 'mmvlp.BEiT3'
    assert cfg.model.backbone.init_cfg.type == 'Pretrained'
    init_default_scope('mmseg')
    from mmseg.registry import MODELS
    model = MODELS.build(cfg.model).eval()
    assert type(model.backbone).__name__ == 'BEiT3'
    meta = [dict(img_shape=(512, 512), ori_shape=(512, 512),
                 pad_shape=(512, 512))]
    with torch.no_grad():
        logits = model.encode_decode(torch.randn(1, 3, 512, 512), meta)
    assert logits.shape == (1, 150, 512, 512)
