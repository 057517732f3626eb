"""Inference-only ``torch.compile`` of a frozen module, weights folded in.

A visual tokenizer used as a masked-image-modeling target, or to tokenize a
dataset offline (``tools/tokenize_images.py``), never changes its weights.
Compiled with inductor's *freezing*, its weights become constants of the
compiled code: GEMM weights are prepacked once and bias/activation epilogues
fused, which on CPU makes the ViT-B encoder of VQ-KD 1.1-1.15x as fast as
eager (``docs/benchmarks.md``). Folding weights in is only correct while
they do not change, so :class:`FrozenCompiledForward` checks that on every
call and otherwise runs eagerly.
"""
import time
from typing import Callable, Iterable, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.logging import print_log

Fingerprint = Tuple[Tuple[int, int, torch.device], ...]


def tensor_fingerprint(tensors: Iterable[torch.Tensor]) -> Fingerprint:
    """Storage, version counter and device of each tensor: any in-place
    update (``load_state_dict``, an optimizer step), replacement or move
    changes it."""
    return tuple((t.data_ptr(), t._version, t.device) for t in tensors)


class FrozenCompiledForward:
    """Run ``fn(x)`` compiled with frozen weights, or eagerly when that
    would be wrong.

    The compiled path is taken only when autograd is off and the weights of
    ``modules`` are the ones seen at compile time (same storage, same version
    counter). If they change, the compiled code would silently use the old
    weights, so the wrapper warns once and runs ``fn`` eagerly from then on
    (compile only frozen models, after loading their weights). If compiling
    fails (e.g. no C++ compiler for inductor), it warns with the reason and
    runs eagerly too.

    Shapes are static (one compiled graph per input shape). A batch smaller
    than the first compiled one is padded with copies of its first sample
    and the outputs are cut back, so the last, partial batch of a dataset
    reuses the compiled graph instead of compiling a new one; this needs
    ``fn`` to treat samples independently (true of a ViT encoder in eval
    mode).

    It is not part of a model's state: :class:`~mmvlp.models.tokenizers.
    BaseVisualTokenizer` drops it when copied or pickled and builds a new one
    on the next call.

    Args:
        fn (Callable): ``fn(x)`` returning a tensor whose first dimension is
            the batch (or a tuple whose tensors are batched).
        modules (nn.Module | Sequence[nn.Module]): Owners of every weight
            and buffer ``fn`` reads.
        name (str): Used in log messages.
    """

    def __init__(self, fn: Callable,
                 modules: Union[nn.Module, Sequence[nn.Module]],
                 name: str = 'module') -> None:
        self.fn = fn
        self.modules = [modules] if isinstance(modules,
                                               nn.Module) else list(modules)
        self.name = name
        self.compiled: Optional[Callable] = None
        self.fingerprint: Optional[Fingerprint] = None
        self.batch_size: Optional[int] = None
        self.disabled_because: Optional[str] = None

    def _weights(self) -> Iterable[torch.Tensor]:
        for module in self.modules:
            yield from module.parameters()
            yield from module.buffers()

    def _disable(self, reason: str) -> None:
        self.disabled_because = reason
        self.compiled = None
        print_log(f'{self.name}: compiled encode disabled, running eagerly: '
                  f'{reason}', logger='current', level=30)

    def __call__(self, x: torch.Tensor):
        if torch.is_grad_enabled() or self.disabled_because is not None:
            return self.fn(x)
        if self.compiled is None:
            return self._compile_and_run(x)
        if tensor_fingerprint(self._weights()) != self.fingerprint:
            self._disable('its weights changed after compilation (the '
                          'compiled code holds the old ones); compile only '
                          'frozen models, after loading their weights.')
            return self.fn(x)
        return self._run(x)

    def _run(self, x: torch.Tensor):
        import torch._inductor.config as inductor_config
        batch = x.shape[0]
        padded = x
        if batch < self.batch_size:
            padded = torch.cat(
                [x, x[:1].expand(self.batch_size - batch, *x.shape[1:])])
        with inductor_config.patch(freezing=True):
            out = self.compiled(padded)
        if padded is x:
            return out
        if isinstance(out, tuple):
            return tuple(o[:batch] if isinstance(o, torch.Tensor) else o
                         for o in out)
        return out[:batch]

    def _compile_and_run(self, x: torch.Tensor):
        start = time.perf_counter()
        self.batch_size = x.shape[0]
        self.fingerprint = tensor_fingerprint(self._weights())
        self.compiled = torch.compile(self.fn, dynamic=False)
        try:
            out = self._run(x)
        except Exception as error:  # inductor needs a working toolchain
            self._disable(f'torch.compile failed ({type(error).__name__}: '
                          f'{str(error).splitlines()[0][:200]})')
            return self.fn(x)
        print_log(f'{self.name}: compiled the encoder for batch '
                  f'{self.batch_size} in {time.perf_counter() - start:.1f} s '
                  '(frozen weights)', logger='current')
        return out
