"""Where the project finds things outside the package: shared data and models.

Everything can be overridden by environment variables, so nothing depends on
this checkout's layout:

* ``DEFOCUS_SHARED``: the shared folder (datasets mirror and published weights),
  default ``<repo>/../shared``.
* ``DEFOCUS_REFERENCE``: the published TIP-2022 weights folder, default
  ``$DEFOCUS_SHARED/reference/tip2022``.
* ``DEFOCUS_MODEL``: the model ``defocus estimate`` uses when ``--model`` is not given.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Model trained by this project's pipeline and shipped in git (when present).
SHIPPED_MODEL = REPO_ROOT / "models" / "default"


def shared_dir() -> Path:
    return Path(os.environ.get("DEFOCUS_SHARED", REPO_ROOT.parent / "shared"))


def reference_dir() -> Path:
    return Path(os.environ.get("DEFOCUS_REFERENCE", shared_dir() / "reference" / "tip2022"))


def default_model_dir() -> Path | None:
    """The model used when none is named: ``$DEFOCUS_MODEL``, else the shipped model,
    else the published TIP-2022 weights if present; None if there is none."""
    if "DEFOCUS_MODEL" in os.environ:
        return Path(os.environ["DEFOCUS_MODEL"])
    for candidate in (SHIPPED_MODEL, reference_dir()):
        if candidate.is_dir():
            return candidate
    return None
