"""The project's one image loader, plus atomic writers.

Every image enters the project through :func:`load_image`, which returns RGB
float32 in [0, 1] whatever the file holds (8- or 16-bit, grey, RGB or RGBA).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np


class ImageError(ValueError):
    """An input file cannot be used; the message names the file and the problem."""


def _read(path: str | os.PathLike, flags: int) -> np.ndarray:
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if data.size == 0:
        raise ImageError(f"{path}: empty file")
    img = cv2.imdecode(data, flags)
    if img is None:
        raise ImageError(f"{path}: not a readable image (corrupt or unsupported format)")
    return img


def to_unit(img: np.ndarray) -> np.ndarray:
    """Scale an integer or float image to float32 in [0, 1]."""
    if img.dtype == np.uint8:
        return img.astype(np.float32) / np.float32(255)
    if img.dtype == np.uint16:
        return img.astype(np.float32) / np.float32(65535)
    out = img.astype(np.float32)
    return np.clip(out, 0.0, 1.0)


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read a photo as RGB float32 in [0, 1].

    Grey images are replicated to three channels, an alpha channel is dropped,
    16-bit images are scaled by 1/65535 and the EXIF orientation is applied.

    Returns
    -------
    image : ndarray, shape (H, W, 3), float32 in [0, 1]

    Raises
    ------
    ImageError
        The file is missing, empty, corrupt or not an image.
    """
    bgr = _read(path, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    if bgr.ndim == 2:
        bgr = np.repeat(bgr[:, :, None], 3, axis=2)
    return to_unit(np.ascontiguousarray(bgr[:, :, ::-1]))


def load_mask(path: str | os.PathLike, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a binary map (edge map, ground-truth mask): True where the grey value >= 50 %.

    Parameters
    ----------
    path : path
        Image file; colour maps are converted to grey first.
    shape : (H, W), optional
        Required size; a mismatch raises :class:`ImageError`.
    """
    img = _read(path, cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH)
    if shape is not None and img.shape[:2] != tuple(shape):
        h, w = img.shape[:2]
        raise ImageError(f"{path}: map is {w}x{h} px but the image is {shape[1]}x{shape[0]} px")
    return to_unit(img) >= 0.5


#: Rows per block of :func:`to_uint8` (its float64 temporaries cover a block, not a 12 MP photo).
BLOCK_ROWS = 256


def to_uint8(img: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """[0, 1] float image (times ``scale``) -> uint8 (rounded), a block of rows at a time."""
    img = np.asarray(img)
    out = np.empty(img.shape, np.uint8)
    for r in range(0, max(len(img), 1), BLOCK_ROWS):
        block = img[r : r + BLOCK_ROWS] * scale if scale != 1.0 else img[r : r + BLOCK_ROWS]
        out[r : r + BLOCK_ROWS] = np.clip(np.rint(np.asarray(block, dtype=np.float64) * 255), 0, 255)
    return out


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(tmp_path)`` and move the result to ``path`` in one step.

    A failure leaves no file at ``path`` (and no temporary file behind).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, create: bool = True):
    """Build a folder in a temporary sibling, then put it at ``path`` in one step.

    Yields the temporary folder (created unless ``create`` is False); when the
    block ends normally it replaces ``path``, and when it raises, it is removed
    and ``path`` is left as it was. A stage's output folder is therefore never
    half-written.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if create:
        tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)


def save_png(path: str | os.PathLike, rgb: np.ndarray) -> None:
    """Write an RGB (or grey) uint8 array as PNG, atomically."""
    arr = np.asarray(rgb)
    if arr.ndim == 3:
        arr = np.ascontiguousarray(arr[:, :, ::-1])

    def write(tmp):
        if not cv2.imwrite(tmp, arr):
            raise OSError(f"{path}: cannot write PNG")

    atomic_write(path, write)


def save_json(path: str | os.PathLike, data: dict) -> None:
    """Write a JSON file atomically, with sorted keys (stable bytes)."""
    import json

    def write(tmp):
        Path(tmp).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")

    atomic_write(path, write)


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a .npy file atomically."""

    def write(tmp):
        with open(tmp, "wb") as fh:
            np.save(fh, array)

    atomic_write(path, write)
