"""The package's import graph: no cycles, no upward imports, small modules.

The graph is read from the source with ``ast`` (nothing is imported):

* a node is a module; a package is its ``__init__``;
* ``import mmvlp.a.b`` and ``from mmvlp.a import b`` (``b`` a submodule) are
  edges to ``mmvlp.a.b``; ``from mmvlp.a import name`` (``name`` not a
  submodule) is an edge to the package ``mmvlp.a``; relative imports resolve
  against the importing module. Importing ``mmvlp.a.b`` also runs
  ``mmvlp/a/__init__`` -- that implicit parent edge is *not* drawn: by then
  the parent is already initialised (or initialising) and it is not a
  dependency the importing code chose;
* an import inside a function (a lazy import) is an edge too, marked lazy.

The rules (docs/architecture.md draws them):

1. No cycle among module-level imports (what Python runs at import time).
2. No cycle at all, lazy imports included: a function-level import is for
   deferring a heavy or optional package (deepspeed, torchvision, the
   models when a tool only needs them on one path), not for hiding that two
   modules need each other. The cycles that still close through lazy
   imports are listed in ``KNOWN_LAZY_CYCLES``; the list may only shrink
   (a listed cycle that is gone fails too, so the list stays true).
3. No upward import across ``LAYERS``: module-level imports never; a lazy
   upward import only where ``ALLOWED_LAZY_UPWARD`` lists it with a reason.
   The deprecated re-export shims (``SHIMS``) are exempt: they exist to
   point an old path at a module's new home.
4. No module over ``MAX_LINES`` lines.
"""
import ast
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / 'mmvlp'
MAX_LINES = 600

#: Layers, lowest first; a module may import its own layer and lower ones.
#: ``mmvlp`` itself (the root ``__init__``) is the entry point above all.
LAYERS: List[Tuple[str, ...]] = [
    ('mmvlp.version', 'mmvlp.registry', 'mmvlp.utils'),
    ('mmvlp.compat', 'mmvlp.checkpoint'),
    ('mmvlp.text', 'mmvlp.models', 'mmvlp.datasets', 'mmvlp.evaluation',
     'mmvlp.visualization'),
    ('mmvlp.engine', ),
    ('mmvlp.runtime', 'mmvlp.apis', 'mmvlp.testing'),
]

#: Old import paths kept for users; each replaces itself by its new home.
SHIMS = {
    'mmvlp.utils.compat', 'mmvlp.utils.checkpoint_safety',
    'mmvlp.utils.strategy_compat', 'mmvlp.utils.numpy_compat',
    'mmvlp.utils.launch', 'mmvlp.utils.batch_scaling',
    'mmvlp.utils.config_check', 'mmvlp.utils.checkpoint_files',
    'mmvlp.utils.checkpoint_fit', 'mmvlp.utils.checkpoint_inspect',
    'mmvlp.utils.checkpoint_loading', 'mmvlp.utils.consolidate',
}

#: (importer, imported): lazy upward imports that are deliberate, with why.
ALLOWED_LAZY_UPWARD: Dict[Tuple[str, str], str] = {}

#: Cycles that still close through lazy imports (sorted module names). None
#: is left: the last one (backbone loader ~> official-file converter ~> task
#: models ~> backbone) was broken by the converters looking the models up by
#: registered name (``converters.checks.registered_model``) and the text-only
#: key names moving to the leaf ``backbones.beit3_keys``.
KNOWN_LAZY_CYCLES: List[Tuple[str, ...]] = []


def _name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix('').parts)
    if parts[-1] == '__init__':
        parts.pop()
    return '.'.join(parts)


MODULES = {_name(p): p for p in sorted(PACKAGE.rglob('*.py'))}


def _owner(name: str) -> str:
    """The longest known module that ``name`` is or lies inside."""
    while name not in MODULES:
        name = name.rsplit('.', 1)[0]
    return name


def _targets(module: str, is_pkg: bool, node: ast.AST) -> List[str]:
    if isinstance(node, ast.Import):
        return [_owner(a.name) for a in node.names
                if a.name.split('.')[0] == 'mmvlp']
    if node.level:
        base = module.split('.')
        if not is_pkg:
            base.pop()
        base = base[:len(base) - (node.level - 1)]
        if node.module:
            base.append(node.module)
        source = '.'.join(base)
    else:
        source = node.module or ''
    if source.split('.')[0] != 'mmvlp':
        return []
    return [source + '.' + a.name if source + '.' + a.name in MODULES
            else _owner(source) for a in node.names]


def _edges() -> Dict[str, Tuple[Set[str], Set[str]]]:
    """Module -> (module-level imports, function-level imports)."""
    edges = {}
    for module, path in MODULES.items():
        top: Set[str] = set()
        lazy: Set[str] = set()
        is_pkg = path.name == '__init__.py'

        def visit(node: ast.AST, in_function: bool) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    (lazy if in_function else top).update(
                        _targets(module, is_pkg, child))
                visit(child, in_function or isinstance(
                    child, (ast.FunctionDef, ast.AsyncFunctionDef,
                            ast.Lambda)))

        visit(ast.parse(path.read_text()), False)
        top.discard(module)
        lazy.discard(module)
        edges[module] = (top, lazy - top)
    return edges


EDGES = _edges()


def _cycles(graph: Dict[str, Set[str]]) -> List[Tuple[str, ...]]:
    """The strongly connected components with more than one module."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found = []

    def connect(v: str) -> None:  # Tarjan; the graph is small
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                found.append(tuple(sorted(part)))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return sorted(found)


def _describe(cycle: Tuple[str, ...], lazy_too: bool) -> str:
    members = set(cycle)
    lines = []
    for m in cycle:
        top, lazy = EDGES[m]
        lines += [f'  {m} -> {t}' for t in sorted(top & members)]
        if lazy_too:
            lines += [f'  {m} ~> {t} (in a function)'
                      for t in sorted(lazy & members)]
    return '\n'.join(lines)


def _layer(module: str) -> int:
    for level, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + '.') for p in prefixes):
            return level
    raise AssertionError(f'{module} is in no layer of LAYERS; add it there '
                         '(and to docs/architecture.md)')


def test_no_module_level_cycle():
    cycles = _cycles({m: top for m, (top, _) in EDGES.items()})
    assert not cycles, 'Import cycles at module level:\n' + '\n\n'.join(
        _describe(c, False) for c in cycles)


def test_no_cycle_through_lazy_imports():
    cycles = _cycles({m: top | lazy for m, (top, lazy) in EDGES.items()})
    new = [c for c in cycles if c not in KNOWN_LAZY_CYCLES]
    assert not new, (
        'Import cycles (-> module level, ~> inside a function); move the '
        'shared code down a layer instead of importing it lazily:\n' +
        '\n\n'.join(_describe(c, True) for c in new))
    gone = [c for c in KNOWN_LAZY_CYCLES if c not in cycles]
    assert not gone, f'Remove these from KNOWN_LAZY_CYCLES: {gone}'


def test_no_upward_import():
    wrong = []
    for module, (top, lazy) in sorted(EDGES.items()):
        if module == 'mmvlp' or module in SHIMS:
            continue
        level = _layer(module)
        for target, is_lazy in [(t, False) for t in top] + [
                (t, True) for t in lazy]:
            if target == 'mmvlp' or _layer(target) <= level:
                continue
            if is_lazy and (module, target) in ALLOWED_LAZY_UPWARD:
                continue
            wrong.append(f'  {module} {"~>" if is_lazy else "->"} {target}')
    assert not wrong, ('Imports from a higher layer (see LAYERS):\n' +
                       '\n'.join(wrong))


def test_allowed_exceptions_are_used():
    """Every listed lazy upward import still exists (the list stays true)."""
    for importer, imported in ALLOWED_LAZY_UPWARD:
        assert imported in EDGES[importer][1], (importer, imported)


def test_module_size():
    big = {m: n for m, p in MODULES.items()
           if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, f'Modules over {MAX_LINES} lines (split them): {big}'


@pytest.mark.parametrize('old', sorted(SHIMS))
def test_old_paths_are_the_new_modules(old):
    """A deprecated path is the same module object as its new home, so
    ``mock.patch('mmvlp.utils.launch.x')`` still patches the real code."""
    import importlib
    module = importlib.import_module(old)
    assert module.__name__ != old, f'{old} is not a re-export shim'
    assert importlib.import_module(module.__name__) is module


def test_old_names_in_mmvlp_utils():
    """``from mmvlp.utils import X`` still gives every name that used to be
    there, the object of its new home."""
    import importlib

    import mmvlp.utils as utils
    for name, home in utils._MOVED.items():
        assert getattr(utils, name) is getattr(
            importlib.import_module(home), name), name
    with pytest.raises(AttributeError, match='no attribute'):
        utils.not_a_name
