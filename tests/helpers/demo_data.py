"""Generated demo data for the tests that run the demo pretraining."""
import os.path as osp

from mmvlp.datasets import make_demo_dataset
from mmvlp.text import train_sentencepiece


def make_demo_with_spm(root, num_train: int, num_val: int,
                       size: int = 48) -> str:
    """The generated demo dataset in ``root`` and a 100-piece sentencepiece
    model of its training captions (``text_spm.model`` there); returns
    ``root`` as a string."""
    root = str(root)
    make_demo_dataset(root, num_train=num_train, num_val=num_val, size=size)
    train_sentencepiece(osp.join(root, 'captions_train.jsonl'),
                        osp.join(root, 'text_spm'), vocab_size=100,
                        field='caption')
    return root
