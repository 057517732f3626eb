"""Give a zero-shot classifier the class names of the dataset it is tested
on."""
from typing import Optional

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmvlp.registry import HOOKS


def clean_class_name(name: str) -> str:
    """The first of comma-separated synonyms, with ``_`` as spaces
    (``'tench, Tinca tinca'`` -> ``'tench'``, ``'great_white_shark'`` ->
    ``'great white shark'``)."""
    return name.split(',')[0].replace('_', ' ').strip()


@HOOKS.register_module()
class ZeroShotClassesHook(Hook):
    """Before validation and testing, set the model's classes (a
    ``ZeroShotClassifier`` built with ``classes=None``) from the dataset's
    ``metainfo['classes']``, so one zero-shot config serves any mmpretrain
    classification dataset.

    Args:
        clean (bool): Shorten the names with :func:`clean_class_name`.
            Defaults to True.
        overwrite (bool): Replace classes the model already has. Defaults
            to False.
    """
    priority = 'VERY_HIGH'

    def __init__(self, clean: bool = True, overwrite: bool = False) -> None:
        self.clean = clean
        self.overwrite = overwrite

    def _set(self, runner, loader) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        if not hasattr(model, 'set_classes'):
            raise TypeError(f'ZeroShotClassesHook needs a ZeroShotClassifier'
                            f', got {type(model).__name__}.')
        if model.classes is not None and not self.overwrite:
            return
        classes: Optional[tuple] = loader.dataset.metainfo.get('classes')
        if not classes:
            raise ValueError(
                f'{type(loader.dataset).__name__} has no metainfo '
                '"classes"; give the class names as model.classes.')
        model.set_classes([clean_class_name(c) if self.clean else c
                           for c in classes])

    def before_val(self, runner) -> None:
        self._set(runner, runner.val_dataloader)

    def before_test(self, runner) -> None:
        self._set(runner, runner.test_dataloader)
