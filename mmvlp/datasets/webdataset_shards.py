"""Image-text pairs and images streamed from webdataset ``.tar`` shards."""
import json
import random
from typing import Dict, Iterator, List, Optional, Sequence, Union

import webdataset as wds
from mmcv.transforms import LoadImageFromFile
from mmengine.dataset import Compose
from mmengine.dist import get_rank, get_world_size
from mmengine.logging import print_log
from torch.utils.data import IterableDataset, get_worker_info

from mmvlp.datasets.skips import (BadDataError, check_caption, record_skip,
                                  skip_counter)
from mmvlp.datasets.transforms.loading import LoadImageSafe, decode_image
from mmvlp.registry import DATASETS, TRANSFORMS, build_scoped


def expand_shard_urls(urls: Union[str, Sequence[str]]) -> List[str]:
    """Shard urls of a brace pattern (``'a-{000..009}.tar'``, ``::`` joins
    several) or of a list of them, in order."""
    if isinstance(urls, str):
        urls = [urls]
    expanded = []
    for url in urls:
        expanded.extend(wds.shardlists.expand_urls(url))
    return expanded


def _keys(keys: Union[str, Sequence[str]]) -> List[str]:
    if isinstance(keys, str):
        keys = keys.split(';')
    return [key.strip().lower() for key in keys if key.strip()]


@DATASETS.register_module()
class WebShardDataset(IterableDataset):
    """Image-caption pairs (or images) streamed from webdataset shards.

    A shard is a ``.tar`` whose files sharing a key form one record, e.g.
    ``000123.jpg`` + ``000123.txt`` (+ ``000123.json`` with other fields);
    ``tools/data/make_shards.py`` writes them from a caption list or an
    image folder. webdataset reads the tars; this class splits the shards,
    shuffles, decodes and runs an mmengine pipeline:

    * **Splitting.** Every epoch the shard list is shuffled with
      ``(seed, epoch)`` (the same order on every rank), rank ``r`` of ``R``
      takes every ``R``-th shard from ``r``, and dataloader worker ``w`` of
      ``W`` every ``W``-th of those: each record is read once per epoch by
      exactly one reader. Fewer shards than ``R x W`` is an error.
    * **Shuffling.** Records pass a shuffle buffer of ``shuffle_buffer``
      records seeded with ``(seed, epoch, rank, worker)``: the order is
      deterministic for those and differs between epochs.
    * **Epochs.** ``set_epoch`` sets the epoch of the next pass
      (:class:`~mmvlp.engine.MultiSourceLoader` calls it when the source is
      exhausted); every pass also moves its own copy to the next epoch, so
      persistent workers (which never see the main process's copy again)
      and ``num_workers=0`` advance as well. With ``repeat=True`` each
      reader goes on to the next epoch by itself and the stream never ends
      (the choice for iteration-based training).
    * **Samples.** The pipeline receives ``img`` (decoded like
      ``mmcv.LoadImageFromFile``: BGR HWC uint8), ``img_shape``,
      ``ori_shape``, ``img_path`` (the record key), ``shard``, ``caption``
      (unless ``with_caption=False``) and the fields of the record's json.
      Image-text pipelines work unchanged when they start with
      ``LoadImageSafe`` (it passes decoded images through);
      ``mmcv.LoadImageFromFile`` is refused.
    * **Resuming.** With ``repeat=True`` a reader's stream is a function of
      the seed, the epoch, the rank and the worker, and a dataloader takes
      its batches from the workers in turn. :meth:`seek` (called by
      :class:`~mmvlp.engine.MultiSourceLoader` when training resumes) makes
      every reader skip the records of the batches already trained on
      without decoding them or running the pipeline: only the tar files
      are read up to there. The resumed stream is the uninterrupted one as
      long as every record up to there decoded and passed the pipeline
      (``make_shards.py`` checks every image when writing); a record that
      failed then shifts the resumed stream by one.
    * **Bad data.** A shard that cannot be opened or read to its end, a
      record without image or caption, an empty or non-UTF-8 caption, an
      undecodable image: skipped, counted by reason (see
      :mod:`mmvlp.datasets.skips`) and carried as ``skipped`` by the next
      sample to :class:`~mmvlp.engine.DataSkipHook`. The stream simply
      moves on, so batches stay full. (A shard cut exactly between two
      records cannot be told from a shorter one; compare ``num_samples``.)

    mmengine's Runner builds it like any dataset; a ``DataLoader`` refuses a
    sampler for an iterable dataset, so give ``sampler=None`` (the key is
    required by ``Runner.build_dataloader``). Each worker batches its own
    stream: a finite stream ends every epoch with up to one short batch per
    worker (``drop_last=True`` drops them, and the skip counts they carry);
    ``repeat=True`` has none::

        pair=dict(
            batch_size=32, num_workers=8, persistent_workers=True,
            sampler=None,  # the stream splits itself
            collate_fn=dict(type='default_collate'),
            dataset=dict(
                type='WebShardDataset',
                urls='data/pairs/pairs-{000000..000999}.tar',
                num_samples=10_000_000,  # printed by make_shards.py
                shuffle_buffer=5000, repeat=True,
                pipeline=[dict(type='LoadImageSafe'), ...,
                          dict(type='PackFields', pad_to=64)]))

    Args:
        urls (str | Sequence[str]): Shards: a brace pattern, ``::``-joined
            patterns or a list. Local paths, ``pipe:`` commands and what
            ``webdataset.gopen`` opens.
        pipeline (Sequence[dict | callable]): Transforms after decoding
            (built in mmvlp's scope).
        image_keys (str | Sequence[str]): Extensions that hold the image,
            the first present is used.
        caption_keys (str | Sequence[str]): Extensions that hold the
            caption, the first present is used; ``json`` means its
            ``caption_field``.
        caption_field (str): Caption field of the json.
        with_caption (bool): False for image-only shards.
        shuffle_buffer (int): Records in the shuffle buffer; 0 or 1 keeps
            the shard order (evaluation).
        shard_shuffle (bool): Shuffle the shard list every epoch.
        seed (int): Seed of the shuffles.
        repeat (bool): Stream epoch after epoch without end (for
            iteration-based training): full batches, no worker restarts and
            no short last batch whose skip counts ``drop_last`` would lose.
        num_samples (int, optional): Records in all shards; ``len()`` is
            ``num_samples // world_size``, needed by epoch-based loops and
            mmengine's ``LoggerHook`` in plain loops (not by
            ``MultiSourceTrainLoop``).
        color_type (str): ``flag`` of ``mmcv.imfrombytes``.
        imdecode_backend (str): Backend of ``mmcv.imfrombytes``.
        rank (int, optional): This process's rank; mmengine's when None.
        world_size (int, optional): Number of ranks; mmengine's when None.
    """

    def __init__(self,
                 urls: Union[str, Sequence[str]],
                 pipeline: Sequence[Union[dict, callable]] = (),
                 image_keys: Union[str, Sequence[str]] = 'jpg;png;jpeg;webp',
                 caption_keys: Union[str, Sequence[str]] = 'txt;json',
                 caption_field: str = 'caption',
                 with_caption: bool = True,
                 shuffle_buffer: int = 1000,
                 shard_shuffle: bool = True,
                 seed: int = 0,
                 repeat: bool = False,
                 num_samples: Optional[int] = None,
                 color_type: str = 'color',
                 imdecode_backend: str = 'cv2',
                 rank: Optional[int] = None,
                 world_size: Optional[int] = None) -> None:
        super().__init__()
        self.urls = expand_shard_urls(urls)
        if not self.urls:
            raise ValueError(f'No shards in urls={urls!r}.')
        transforms = [
            build_scoped(TRANSFORMS, t) if isinstance(t, dict) else t
            for t in pipeline
        ]
        for t in transforms:
            if isinstance(t, LoadImageFromFile) and not isinstance(
                    t, LoadImageSafe):
                raise ValueError(
                    'WebShardDataset decodes the images of its shards; drop '
                    f'{type(t).__name__} from the pipeline or use '
                    'LoadImageSafe, which passes decoded images through.')
        self.pipeline = Compose(transforms)
        self.image_keys = _keys(image_keys)
        self.caption_keys = _keys(caption_keys)
        self.caption_field = caption_field
        self.with_caption = with_caption
        self.shuffle_buffer = shuffle_buffer
        self.shard_shuffle = shard_shuffle
        self.seed = seed
        self.repeat = repeat
        self.num_samples = num_samples
        self.color_type = color_type
        self.imdecode_backend = imdecode_backend
        self.rank = get_rank() if rank is None else rank
        self.world_size = (get_world_size()
                           if world_size is None else world_size)
        self.epoch = 0
        self._warned_uneven = False
        self._seek: Optional[tuple] = None
        self._fast_forward = 0

    @property
    def metainfo(self) -> dict:
        """Dataset meta information (none), as mmengine's loops ask."""
        return dict()

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass epoch ``epoch`` (shuffles depend on it)."""
        self.epoch = epoch

    def seek(self, batches: int, batch_size: int) -> None:
        """Start the next pass after ``batches`` batches of ``batch_size``
        (in a dataloader with any number of workers), skipping what comes
        before without decoding it. Needs ``repeat=True`` (a finite stream
        ends at different points per worker).

        Raises:
            ValueError: ``repeat`` is off or the arguments are negative.
        """
        if not self.repeat:
            raise ValueError('WebShardDataset.seek needs repeat=True.')
        if batches < 0 or batch_size < 1:
            raise ValueError(f'Cannot seek to {batches} batches of '
                             f'{batch_size}.')
        self._seek = (batches, batch_size)

    def __len__(self) -> int:
        if self.num_samples is None:
            raise TypeError(
                f'WebShardDataset({self.urls[0]}, ...) does not know its '
                'length: set num_samples= to the number of records in the '
                'shards (tools/data/make_shards.py prints it).')
        return self.num_samples // self.world_size

    def shards_for(self, epoch: int, worker: int = 0,
                   num_workers: int = 1) -> List[str]:
        """The shards that ``worker`` of this rank reads in ``epoch``.

        Raises:
            ValueError: Fewer shards than ranks x workers.
        """
        readers = self.world_size * num_workers
        if len(self.urls) < readers:
            raise ValueError(
                f'{len(self.urls)} shard(s) cannot feed {self.world_size} '
                f'rank(s) x {num_workers} dataloader worker(s) = {readers} '
                'readers, each needs at least one shard: write more, '
                'smaller shards (tools/data/make_shards.py --maxcount) or '
                'lower num_workers.')
        urls = list(self.urls)
        if self.shard_shuffle:
            random.Random(f'shards/{self.seed}/{epoch}').shuffle(urls)
        return urls[self.rank::self.world_size][worker::num_workers]

    def _records(self, shards: List[str]) -> Iterator[dict]:
        """Raw records (``__key__``, ``__url__``, extension: bytes) of
        ``shards``; broken shards are counted once each."""
        current: Dict[str, object] = {}
        broken = set()

        def source():
            for url in shards:
                current['url'] = url
                current['item'] = item = dict(url=url)
                yield item  # webdataset opens it and adds the stream
                stream = item.get('stream')
                if stream is not None and hasattr(stream, 'close'):
                    stream.close()

        def handler(error: Exception) -> bool:
            url = current.get('url')
            if url not in broken:
                broken.add(url)
                record_skip('broken_shard', f'{url} ({error!r:.200})')
            return True  # go on with the next record or shard

        return wds.tarfile_to_samples(handler=handler)(source())

    def _prepare(self, record: dict, decode: bool = True) -> dict:
        """The pipeline input of a raw record (without the image when
        ``decode`` is False).

        Raises:
            BadDataError: The record cannot be used.
        """
        key, url = record.get('__key__'), record.get('__url__')
        where = f'{url}:{key}'
        fields = sorted(k for k in record if not k.startswith('__'))
        image_key = next((k for k in self.image_keys if k in record), None)
        if image_key is None:
            raise BadDataError(
                'missing_field', f'{where} has no {"/".join(self.image_keys)}'
                f' (fields: {fields})')
        extra = {}
        if 'json' in record:
            try:
                meta = json.loads(record['json'])
            except ValueError as error:
                raise BadDataError('broken_record',
                                   f'{where}.json: {error}') from None
            if isinstance(meta, dict):
                extra = meta
        results = dict(extra)
        if self.with_caption:
            caption = None
            for caption_key in self.caption_keys:
                if caption_key == 'json':
                    caption = extra.get(self.caption_field)
                elif caption_key in record:
                    try:
                        caption = record[caption_key].decode('utf-8')
                    except UnicodeDecodeError as error:
                        raise BadDataError(
                            'bad_encoding',
                            f'{where}.{caption_key}: {error}') from None
                    except AttributeError as error:
                        raise BadDataError(
                            'broken_record',
                            f'{where}.{caption_key}: {error}') from None
                if caption is not None:
                    break
            if caption is None:
                raise BadDataError(
                    'missing_field',
                    f'{where} has no caption in '
                    f'{"/".join(self.caption_keys)} (fields: {fields})')
            results['caption'] = check_caption(caption, where)
        if not decode:
            return results
        img = decode_image(record[image_key], self.color_type,
                           self.imdecode_backend, f'{where}.{image_key}')
        results.update(img=img, img_shape=img.shape[:2],
                       ori_shape=img.shape[:2], img_path=key, shard=url)
        return results

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info else (0, 1)
        epoch = self.epoch
        if self._seek is not None:
            # Batch i of the dataloader came from worker i % num_workers; a
            # new dataloader starts again with worker 0, so worker w takes
            # the stream of worker (w + batches) % num_workers and skips
            # that stream's part of the first `batches` batches.
            batches, batch_size = self._seek
            self._seek = None
            worker = (worker + batches) % num_workers
            self._fast_forward = len(range(worker, batches,
                                           num_workers)) * batch_size
        while True:
            self.epoch = epoch + 1  # this copy's next pass (class docstring)
            delivered = yield from self._epoch(epoch, worker, num_workers)
            if not self.repeat:
                return
            if not delivered:
                raise RuntimeError(
                    f'Rank {self.rank} worker {worker} found no usable '
                    f'record in its shards of epoch {epoch} '
                    f'({self.shards_for(epoch, worker, num_workers)}); see '
                    'the skipped-data warnings.')
            epoch += 1

    def _epoch(self, epoch: int, worker: int,
               num_workers: int) -> Iterator[dict]:
        """The samples of one reader in one epoch; returns how many."""
        shards = self.shards_for(epoch, worker, num_workers)
        readers = self.world_size * num_workers
        if len(self.urls) % readers and not self._warned_uneven:
            self._warned_uneven = True
            print_log(
                f'{len(self.urls)} shards over {readers} readers (ranks x '
                'workers): some read one shard more than others.',
                logger='current', level=30)
        records = self._records(shards)
        if self.shuffle_buffer > 1:
            rng = random.Random(
                f'records/{self.seed}/{epoch}/{self.rank}/{worker}')
            records = wds.shuffle(
                self.shuffle_buffer,
                initial=max(1, self.shuffle_buffer // 2),
                rng=rng)(records)
        counter = skip_counter()
        previous, delivered = None, 0
        for record in records:
            if self._fast_forward:
                # Resuming: trained on before; its skips were counted then.
                try:
                    self._prepare(record, decode=False)
                except BadDataError:
                    continue
                self._fast_forward -= 1
                delivered += 1
                continue
            try:
                results = self._prepare(record)
            except BadDataError as error:
                record_skip(error.reason, error.detail)
                continue
            data = self.pipeline(results)
            if data is None:
                record_skip('rejected_by_pipeline',
                            f"{results['shard']}:{results['img_path']}")
                continue
            # Hold one sample back: skips found after the last good record
            # of this reader still reach the hook, with that record.
            if previous is not None:
                yield previous
                delivered += 1
            previous = counter.attach(data)
        if previous is not None:
            yield counter.attach(previous)
            delivered += 1
        return delivered

    def __repr__(self) -> str:
        return (f'{type(self).__name__}({len(self.urls)} shards, '
                f'with_caption={self.with_caption}, '
                f'shuffle_buffer={self.shuffle_buffer})')
