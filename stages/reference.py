"""Stage reference: copy the published TIP-2022 weights (and the authors' RTF edge maps)
into data/reference, for the reference row of the evaluation tables.

The folder comes from ``reference.path`` in params.yaml (relative to the repository);
when it is empty or missing, data/reference holds only a status file saying so, and
the tables mark the reference row unavailable.
"""

import shutil
import sys
from pathlib import Path

from defocus import backend

backend.use_params()  # before Keras loads: params.yaml's backend

from defocus.images import atomic_dir, save_json  # noqa: E402
from defocus.params import load_params  # noqa: E402
from defocus.weights import is_published_folder  # noqa: E402

OUT = Path("data/reference")


def main() -> int:
    src = load_params()["reference"]["path"]
    with atomic_dir(OUT) as tmp:
        if src and is_published_folder(src):
            for part in ("blur", "edge", "edges"):
                if (Path(src) / part).is_dir():
                    shutil.copytree(Path(src) / part, tmp / part)
            status = {"status": "ok", "source": src}
            print(f"reference: published TIP-2022 weights copied from {src}")
        else:
            status = {"status": "unavailable", "source": src,
                      "why": "reference.path is empty" if not src else f"{src}: no blur/0.mat and edge/0.mat"}
            print(f"reference: unavailable ({status['why']}); the reference rows will say so", file=sys.stderr)
        save_json(tmp / "status.json", status)
    return 0


if __name__ == "__main__":
    sys.exit(main())
