"""Image loading that skips and counts bad files instead of crashing."""
from typing import Optional

import mmcv
import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmengine import fileio

from mmvlp.datasets.skips import BadDataError, record_skip
from mmvlp.registry import TRANSFORMS

# Magic bytes of the formats whose end can be checked cheaply.
_JPEG, _PNG = b'\xff\xd8\xff', b'\x89PNG\r\n\x1a\n'
_OTHER_IMAGES = (b'GIF8', b'BM', b'II*\x00', b'MM\x00*')
_TAIL = 4096  # bytes searched for the end marker (trailing padding allowed)


def _looks_like_image(data: bytes) -> bool:
    return data.startswith((_JPEG, _PNG) + _OTHER_IMAGES) or (
        data[:4] == b'RIFF' and data[8:12] == b'WEBP')


def decode_image(data: bytes,
                 color_type: str = 'color',
                 backend: str = 'cv2',
                 detail: str = '') -> np.ndarray:
    """Decode image bytes as ``mmcv.imfrombytes`` (BGR HWC for colour).

    OpenCV decodes a JPEG that ends early into a partly grey image without
    an error; a JPEG without its end-of-image marker and a PNG without its
    ``IEND`` chunk are therefore refused as truncated.

    Args:
        data (bytes): Encoded image.
        color_type (str): ``flag`` of ``mmcv.imfrombytes``.
        backend (str): Decoding backend of ``mmcv.imfrombytes``.
        detail (str): Where the bytes come from, for the error.

    Returns:
        np.ndarray: The decoded image.

    Raises:
        BadDataError: ``empty_file``, ``truncated_image`` (a JPEG/PNG that
            ends early or does not decode) or ``not_an_image``.
    """
    if not data:
        raise BadDataError('empty_file', detail)
    known = _looks_like_image(data)
    tail = data[-_TAIL:]
    if (data.startswith(_JPEG) and b'\xff\xd9' not in tail) or (
            data.startswith(_PNG) and b'IEND' not in tail):
        raise BadDataError('truncated_image', detail)
    try:
        img = mmcv.imfrombytes(data, flag=color_type, backend=backend)
    except Exception:  # decoders raise many types on garbage
        img = None
    if img is None:
        raise BadDataError('truncated_image' if known else 'not_an_image',
                           detail)
    return img


def read_image_file(filename,
                    color_type: str = 'color',
                    backend: str = 'cv2',
                    backend_args: Optional[dict] = None,
                    file_client_args: Optional[dict] = None) -> np.ndarray:
    """Read and decode an image file (BGR HWC for colour), naming why not.

    What :class:`LoadImageSafe` and the offline tools
    (``tools/extract_features.py``) read images with.

    Args:
        filename: Path (or URL of an mmengine file backend).
        color_type (str): ``flag`` of ``mmcv.imfrombytes``.
        backend (str): Decoding backend of ``mmcv.imfrombytes``.
        backend_args (dict, optional): mmengine ``fileio`` backend arguments.
        file_client_args (dict, optional): The deprecated ``FileClient``
            arguments (used instead of ``backend_args`` when given).

    Returns:
        np.ndarray: The decoded image.

    Raises:
        BadDataError: ``missing_file``, ``unreadable_file`` (permissions, a
            folder, I/O errors) or the reasons of :func:`decode_image`.
    """
    try:
        if file_client_args is not None:
            data = fileio.FileClient.infer_client(
                file_client_args, filename).get(filename)
        else:
            data = fileio.get(filename, backend_args=backend_args)
    except FileNotFoundError:
        raise BadDataError('missing_file', str(filename)) from None
    except Exception as error:  # permissions, a folder, I/O errors
        raise BadDataError('unreadable_file',
                           f'{filename} ({error!r})') from None
    return decode_image(data, color_type, backend, str(filename))


@TRANSFORMS.register_module()
class LoadImageSafe(LoadImageFromFile):
    """``mmcv.LoadImageFromFile`` that skips bad files and counts them.

    A missing, unreadable, empty, truncated or non-image file makes the
    transform return None, so that mmengine's ``BaseDataset`` replaces the
    sample by another one (``max_refetch``) and the batch keeps its size;
    the reason is counted (see :mod:`mmvlp.datasets.skips`) and the next
    sample packed by ``PackFields`` carries the count to
    :class:`~mmvlp.engine.DataSkipHook`. A sample that already holds a
    decoded ``img`` (e.g. from :class:`~mmvlp.datasets.WebShardDataset`)
    passes through, so one pipeline serves files and shards.

    Args:
        **kwargs: ``mmcv.LoadImageFromFile`` arguments (``to_float32``,
            ``color_type``, ``imdecode_backend``, ``backend_args``).
    """

    def transform(self, results: dict) -> Optional[dict]:
        if results.get('img') is None:
            filename = results['img_path']
            try:
                img = read_image_file(filename, self.color_type,
                                      self.imdecode_backend,
                                      self.backend_args,
                                      self.file_client_args)
            except BadDataError as error:
                record_skip(error.reason, error.detail)
                return None
            results['img'] = img
        img = results['img']
        if self.to_float32:
            img = results['img'] = img.astype(np.float32)
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = results.get('ori_shape', img.shape[:2])
        return results
