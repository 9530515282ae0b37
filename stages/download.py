"""Stage download: bring the datasets into data/raw (mirror, else URL, else fallback)."""

import sys
from pathlib import Path

from defocus.datasets import gather
from defocus.images import atomic_dir, save_json
from defocus.params import load_params

OUT, DOWNLOADS, SUMMARY = Path("data/raw"), Path("data/downloads"), Path("reports/data/download.json")


def main() -> int:
    params = load_params()["download"]
    with atomic_dir(OUT, create=False) as tmp:
        manifest = gather(params, tmp, DOWNLOADS, progress=sys.stderr.isatty())
        save_json(tmp / "manifest.json", manifest)
    save_json(SUMMARY, {
        name: {"status": d["status"], "comparable": d["comparable"], "files": len(d["files"]),
               "heldout": len(d["heldout"]), "benchmark": len(d.get("benchmark", [])), "skipped": len(d["skipped"])}
        for name, d in manifest.items()
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
