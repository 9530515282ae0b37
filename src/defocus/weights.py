"""Load and save B-NET / E-NET weights.

Two model-folder layouts are understood:

* **defocus format** (written by :func:`save_model`): ``model.json`` plus
  ``bnet.weights.h5`` and ``enet.weights.h5`` (Keras 3 weight files).
* **published TIP-2022 format**: ``blur/0.mat .. blur/21.mat`` and
  ``edge/0.mat .. edge/25.mat`` (MATLAB v5, variable ``weights``; conv kernels
  HWIO, dense kernels [in, out], biases [1, out]), as released with the paper.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import nets

MODEL_JSON = "model.json"


class ModelError(RuntimeError):
    """A model folder is missing, incomplete or unreadable."""


@dataclass
class Model:
    """A pair of networks ready for inference.

    Attributes
    ----------
    bnet, enet : keras.Model
        The blur (23-class) and edge (2-class) networks.
    source : str
        Where the weights came from (folder path).
    kind : str
        ``"defocus"`` or ``"tip2022"`` (the published weights).
    meta : dict
        Provenance stored with the model (empty for the published weights).
    """

    bnet: object
    enet: object
    source: str
    kind: str
    meta: dict = field(default_factory=dict)


# Published file index -> layer name, per network.
def _published_plan(net: str) -> list[str]:
    convs = lambda prefix, n: [f"{prefix}_conv{i}" for i in range(1, n + 1)]  # noqa: E731
    dense = lambda p: [f"{p}_dense1", f"{p}_dense2", f"{p}_out"]  # noqa: E731
    if net == "blur":
        order = convs("f1_41", 4) + convs("f1_27", 4) + convs("f1_15", 4) + convs("b", 4)
        return order + dense("b")
    order = convs("f1_41", 4) + convs("f2_41", 4) + convs("f1_27", 4) + convs("f1_15", 4)
    return order + convs("e", 4) + dense("e")


def _load_mat(path: Path) -> np.ndarray:
    from scipy.io import loadmat

    try:
        return np.asarray(loadmat(str(path))["weights"], dtype=np.float32)
    except FileNotFoundError:
        raise ModelError(f"{path}: missing weight file") from None
    except Exception as exc:  # corrupt .mat, missing variable
        raise ModelError(f"{path}: cannot read published weights ({exc})") from None


def _assign_published(model, folder: Path, net: str) -> None:
    names = _published_plan(net)
    i = 0
    for name in names:
        layer = nets.find_layer(model, name)
        kernel = _load_mat(folder / net / f"{i}.mat")
        i += 1
        values = [kernel]
        if getattr(layer, "use_bias", False):
            values.append(_load_mat(folder / net / f"{i}.mat").ravel())
            i += 1
        expected = [tuple(w.shape) for w in layer.get_weights()]
        got = [v.shape for v in values]
        if expected != got:
            raise ModelError(f"{folder / net}: layer {name} expects shapes {expected}, files give {got}")
        layer.set_weights(values)


def is_published_folder(folder: str | os.PathLike) -> bool:
    folder = Path(folder)
    return (folder / "blur" / "0.mat").is_file() and (folder / "edge" / "0.mat").is_file()


def load_published(folder: str | os.PathLike) -> Model:
    """Build B-NET and E-NET and fill them with the published TIP-2022 weights.

    Parameters
    ----------
    folder : path
        Folder holding ``blur/*.mat`` and ``edge/*.mat``.
    """
    folder = Path(folder)
    if not is_published_folder(folder):
        raise ModelError(f"{folder}: not a TIP-2022 weights folder (no blur/0.mat and edge/0.mat)")
    bnet, enet = nets.build_bnet(), nets.build_enet()
    _assign_published(bnet, folder, "blur")
    _assign_published(enet, folder, "edge")
    return Model(bnet, enet, str(folder), "tip2022", {})


def save_model(folder: str | os.PathLike, bnet, enet, meta: dict | None = None) -> None:
    """Write a model folder in the defocus format, atomically.

    The files are written to a temporary folder beside ``folder`` which then
    replaces it, so an interrupted save never leaves a half-written model.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        bnet.save_weights(tmp / "bnet.weights.h5")
        enet.save_weights(tmp / "enet.weights.h5")
        info = {"format": "defocus-model", "version": 1, **(meta or {})}
        (tmp / MODEL_JSON).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            os.replace(folder, old)
            os.replace(tmp, folder)
            import shutil

            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    except BaseException:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_model(folder: str | os.PathLike) -> Model:
    """Load a model folder of either layout (see module docstring)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"{folder}: model folder not found")
    if is_published_folder(folder):
        return load_published(folder)
    info_path = folder / MODEL_JSON
    if not info_path.is_file():
        raise ModelError(f"{folder}: not a model folder (no {MODEL_JSON}, no blur/ and edge/ .mat files)")
    try:
        meta = json.loads(info_path.read_text())
    except ValueError as exc:
        raise ModelError(f"{info_path}: invalid JSON ({exc})") from None
    bnet, enet = nets.build_bnet(), nets.build_enet()
    for net, fname in ((bnet, "bnet.weights.h5"), (enet, "enet.weights.h5")):
        try:
            net.load_weights(folder / fname)
        except Exception as exc:
            raise ModelError(f"{folder / fname}: cannot load weights ({exc})") from None
    return Model(bnet, enet, str(folder), "defocus", meta)
