"""Datasets: where each comes from and how it is brought into ``data/raw``.

Sources, tried in order for each dataset:

1. a local mirror folder (``download.mirror`` in ``params.yaml``; on the
   project's machines ``../shared/data``, laid out as its README says);
2. the official archive URL, downloaded with resume (HTTP ``Range``), a progress
   bar and, where one is recorded, a SHA-256 check, then unpacked;
3. for the sharp photos only, the colour photos bundled with scikit-image, with a
   warning that results are then not comparable with the paper.

A dataset found nowhere is recorded as unavailable in the manifest; the stages
that need it report that rather than inventing numbers.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from .images import ImageError, load_image, load_mask

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


class DownloadError(RuntimeError):
    """A download failed or its checksum did not match."""


@dataclass(frozen=True)
class Dataset:
    """Where a dataset lives and which files make it up.

    ``mirror_layout`` / ``archive_layout`` map an output sub-folder ("" for the
    dataset's own folder) to a glob, relative to the mirror sub-folder or to the
    unpacked archive. When a layout has several parts (images and masks), files
    are paired by file stem.
    """

    name: str
    role: str  # sharp | salient | rtf | dbd
    mirror: str
    mirror_layout: dict[str, str]
    url: str | None = None
    sha256: str | None = None
    archive_layout: dict[str, str] = field(default_factory=dict)
    extra_urls: tuple[tuple[str, str | None], ...] = ()  # further archives to unpack beside the first


#: The datasets of the pipeline. URLs are the official ones where a direct
#: download exists; ``None`` where the dataset needs a login or has no stable
#: address (set ``download.urls.<name>`` in params.yaml to a copy of yours).
DATASETS: dict[str, Dataset] = {
    "coco": Dataset(
        "coco", "sharp", "sharp/coco", {"": "*.jpg"},
        url="http://images.cocodataset.org/zips/val2017.zip", archive_layout={"": "val2017/*.jpg"},
    ),
    "ilsvrc": Dataset("ilsvrc", "sharp", "sharp/ilsvrc", {"": "*.JPEG|*.jpg"}),
    "salient": Dataset(
        "salient", "salient", "salient/duts-te", {"images": "images/*.jpg", "masks": "masks/*.png"},
        url="http://saliencydetection.net/duts/download/DUTS-TE.zip",
        archive_layout={"images": "DUTS-TE/DUTS-TE-Image/*.jpg", "masks": "DUTS-TE/DUTS-TE-Mask/*.png"},
    ),
    "rtf": Dataset("rtf", "rtf", "rtf", {"": "*.png|*.mat"}),
    "dbd": Dataset(
        "dbd", "dbd", "dbd/dut", {"images": "images/*", "gt": "gt/*"},
        url="http://www.cse.cuhk.edu.hk/leojia/projects/dblurdetect/data/BlurDatasetImage.zip",
        archive_layout={"images": "image/*", "gt": "gt/*"},
        extra_urls=(("http://www.cse.cuhk.edu.hk/leojia/projects/dblurdetect/data/BlurDatasetGT.zip", None),),
    ),
}

#: Colour photos bundled with scikit-image: the last-resort sharp set.
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")


# ---------------------------------------------------------------- downloading
def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fetch(url: str, dest: str | Path, sha256: str | None = None, progress: bool = True, timeout: float = 60) -> Path:
    """Download ``url`` to ``dest``, resuming a partial download, checking SHA-256.

    The bytes go to ``dest + '.part'`` first; a re-run continues from its size
    (HTTP ``Range``; a server that ignores it is read from the start). Only a
    complete file whose checksum matches is moved to ``dest``; a mismatch deletes
    the partial file and raises :class:`DownloadError`. Without a recorded
    checksum the file is kept and its SHA-256 is printed so it can be recorded.
    """
    dest = Path(dest)
    if dest.exists() and (sha256 is None or sha256_of(dest) == sha256):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": "defocus"})
    if start:
        req.add_header("Range", f"bytes={start}-")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            if start and resp.status != 206:
                start = 0  # no resume support: start again
            total = resp.headers.get("Content-Length")
            total = int(total) + start if total is not None else None
            with open(part, "ab" if start else "wb") as f, tqdm(
                total=total, initial=start, unit="B", unit_scale=True, desc=dest.name, disable=not progress, file=sys.stderr
            ) as bar:
                while block := resp.read(1 << 16):
                    f.write(block)
                    bar.update(len(block))
        if total is not None and part.stat().st_size < total:
            raise DownloadError(f"{url}: connection closed after {part.stat().st_size} of {total} bytes "
                                f"(partial download kept in {part}; re-run to resume)")
    except urllib.error.HTTPError as e:
        if e.code == 416 and part.exists():  # range past the end: the part file is already complete
            pass
        else:
            raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError) as e:
        raise DownloadError(f"{url}: {getattr(e, 'reason', e)} (partial download kept in {part}; re-run to resume)") from e
    digest = sha256_of(part)
    if sha256 is not None and digest != sha256:
        part.unlink()
        raise DownloadError(f"{url}: SHA-256 mismatch (expected {sha256}, got {digest}); download deleted")
    if sha256 is None:
        warnings.warn(f"{url}: no checksum recorded; downloaded file has SHA-256 {digest}", stacklevel=2)
    part.replace(dest)
    return dest


def unpack(archive: Path, into: Path) -> Path:
    """Unpack a zip or tar archive into ``into`` once (a marker file records completion)."""
    marker = into / f".unpacked-{archive.name}"
    if marker.exists():
        return into
    into.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for m in z.namelist():
                if Path(m).is_absolute() or ".." in Path(m).parts:
                    raise DownloadError(f"{archive}: unsafe member path {m!r}")
            z.extractall(into)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as t:
            t.extractall(into, filter="data")
    else:
        raise DownloadError(f"{archive}: neither a zip nor a tar archive")
    marker.touch()
    return into


# ---------------------------------------------------------------- selecting files
def _glob(root: Path, pattern: str) -> list[Path]:
    files: set[Path] = set()
    for p in pattern.split("|"):
        files.update(q for q in root.glob(p) if q.is_file() and not q.name.startswith("."))
    return sorted(files)


def list_parts(root: Path, layout: dict[str, str]) -> list[dict[str, Path]]:
    """Files of a dataset root as records {part: path}, paired by stem when several parts."""
    parts = {k: _glob(root, v) for k, v in layout.items()}
    if len(parts) == 1:
        (k, files), = parts.items()
        return [{k: f} for f in files]
    by_stem = [{f.stem: f for f in files} for files in parts.values()]
    stems = sorted(set.intersection(*(set(d) for d in by_stem)))
    return [{k: d[s] for k, d in zip(parts, by_stem)} for s in stems]


def check_record(rec: dict[str, Path], role: str) -> str | None:
    """Why a file record is unusable (None when fine): unreadable images or masks."""
    try:
        for part, path in rec.items():
            if path.suffix.lower() not in IMAGE_EXTS:
                continue
            if part in ("masks", "gt"):
                load_mask(path)
            else:
                load_image(path)
    except ImageError as e:
        return str(e)
    return None


def resolve(ds: Dataset, mirror: Path | None, downloads: Path, url: str | None, sha256: str | None,
            progress: bool = True) -> tuple[Path, dict[str, str], str] | None:
    """Find a dataset: (root folder, layout, source description), or None if nowhere."""
    if mirror is not None and (mirror / ds.mirror).is_dir():
        return mirror / ds.mirror, ds.mirror_layout, f"mirror {mirror / ds.mirror}"
    if url:
        root = downloads / ds.name
        try:
            for u, s in ((url, sha256), *ds.extra_urls):
                archive = fetch(u, downloads / f"{ds.name}-{Path(u.split('?')[0]).name}", s, progress=progress)
                unpack(archive, root)
        except DownloadError as e:
            print(f"download: {ds.name}: {e}", file=sys.stderr)
            return None
        return root, ds.archive_layout or ds.mirror_layout, f"url {url}"
    return None


def copy_records(records: list[dict[str, Path]], out: Path) -> list[dict[str, str]]:
    """Copy records' files byte for byte into ``out/<part>/``; returns relative names."""
    copied = []
    for rec in records:
        row = {}
        for part, src in rec.items():
            dst = out / part / src.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            row[part or "file"] = str(dst.relative_to(out))
        copied.append(row)
    return copied


def skimage_photos(out: Path, n: int) -> list[str]:
    """Write up to ``n`` scikit-image colour photos as PNG into ``out``; returns names."""
    import skimage.data

    from .images import save_png

    names = []
    for name in SKIMAGE_PHOTOS[:n]:
        img = getattr(skimage.data, name)()
        if img.ndim != 3:
            continue
        save_png(out / f"{name}.png", img[..., :3])
        names.append(f"{name}.png")
    return names


# ---------------------------------------------------------------- the download stage
#: How many files of each role the download stage selects: (training, held out);
#: ``None`` = all of them.
def _wanted(role: str, params: dict) -> tuple[int | None, int]:
    if role == "sharp":
        return int(params["sharp"]), int(params["sharp_heldout"])
    if role == "salient":
        return int(params["salient"]), int(params["salient_heldout"])
    return None, 0


def gather(params: dict, out: Path, downloads: Path, progress: bool = True) -> dict:
    """Bring every dataset into ``out`` (``data/raw``); returns the manifest.

    Parameters
    ----------
    params : the ``download`` section of params.yaml
    out : output folder (must not exist yet)
    downloads : folder for archives and their unpacked contents (kept between runs)

    The manifest has, per dataset: ``status`` (``ok`` / ``fallback`` /
    ``unavailable``), ``source``, ``comparable`` (False for the scikit-image
    fallback), the copied ``files`` and ``heldout`` files, and the ``skipped``
    unreadable files with the reason.
    """
    mirror = Path(params["mirror"]) if params.get("mirror") else None
    if mirror is not None and not mirror.is_dir():
        print(f"download: mirror folder {mirror} not found; trying the official URLs", file=sys.stderr)
        mirror = None
    urls, sums = params.get("urls") or {}, params.get("sha256") or {}
    manifest: dict[str, dict] = {}
    for name, ds in DATASETS.items():
        found = resolve(ds, mirror, downloads, urls.get(name, ds.url), sums.get(name, ds.sha256), progress)
        if found is None:
            manifest[name] = {"status": "unavailable", "source": None, "comparable": False,
                              "files": [], "heldout": [], "skipped": []}
            print(f"download: {name}: not in the mirror and no usable URL: UNAVAILABLE "
                  f"(set download.mirror or download.urls.{name})", file=sys.stderr)
            continue
        root, layout, source = found
        n_train, n_held = _wanted(ds.role, params)
        records = list_parts(root, layout)
        # the benchmark's files: the last readable ones of the listing, never trained on whatever the sizes
        n_bench = int((params.get("benchmark") or {}).get(ds.role, 0))
        bench, cut = [], len(records)
        for i in range(len(records) - 1, -1, -1):
            if len(bench) == n_bench:
                break
            if not check_record(records[i], ds.role):
                bench.insert(0, records[i])
            cut = i
        records = records[:cut]
        keep, skipped = [], []
        limit = None if n_train is None else n_train + n_held
        for rec in records:
            if limit is not None and len(keep) == limit:
                break
            why = check_record(rec, ds.role)
            if why:
                skipped.append(why)
            else:
                keep.append(rec)
        if skipped:
            warnings.warn(f"{name}: skipped {len(skipped)} unreadable file(s):\n  " + "\n  ".join(skipped), stacklevel=2)
        # the held-out files come first, so that they stay the same whatever the training size
        # (a dataset too short for both fills the training share first)
        n_h = 0 if n_train is None else min(n_held, max(0, len(keep) - n_train))
        held, train = keep[:n_h], keep[n_h:]
        manifest[name] = {
            "status": "ok", "source": source, "comparable": True,
            "files": copy_records(train, out / name),
            "heldout": copy_records(held, out / "heldout" / name),
            "benchmark": copy_records(bench, out / "benchmark" / name),
            "skipped": skipped,
        }
        short = "" if limit is None or len(keep) == limit else f" (only {len(keep)} of {limit} wanted)"
        print(f"download: {name}: {len(train)} + {len(held)} held out + {len(bench)} benchmark from {source}{short}")
    sharp = [n for n, d in DATASETS.items() if d.role == "sharp"]
    if all(manifest[n]["status"] == "unavailable" for n in sharp):
        warnings.warn("no sharp photo set found: using the photos bundled with scikit-image. "
                      "Models and results are then NOT comparable with the paper.", stacklevel=2)
        names = skimage_photos(out / "skimage", int(params["sharp"]))
        manifest["skimage"] = {"status": "fallback", "source": "scikit-image", "comparable": False,
                               "files": [{"file": n} for n in names], "heldout": [], "skipped": []}
    return manifest


def sharp_pool(raw: Path, manifest: dict, heldout: bool | str = False) -> list[tuple[str, Path]]:
    """Sharp photos of the download stage as (id, path), the sources interleaved.

    Ids are ``<dataset>/<file stem>``; order: first of each source, second of
    each source, and so on. ``heldout``: False (training photos), True (held out
    for evaluation) or ``"benchmark"`` (the networks' benchmark set).
    """
    lists = []
    for name in [*(n for n, d in DATASETS.items() if d.role == "sharp"), "skimage"]:
        entry = manifest.get(name)
        if not entry or entry["status"] == "unavailable":
            continue
        key = _pool_key(heldout)
        base = raw / name if key == "files" else raw / key / name
        lists.append([(f"{name}/{Path(r['file']).stem}", base / r["file"]) for r in entry.get(key, [])])
    pool = []
    for i in range(max((len(l) for l in lists), default=0)):
        pool.extend(l[i] for l in lists if i < len(l))
    return pool


def salient_pool(raw: Path, manifest: dict, heldout: bool | str = False) -> list[tuple[str, Path, Path]]:
    """Salient objects as (id, image path, mask path); ``heldout`` as :func:`sharp_pool`."""
    entry = manifest.get("salient")
    if not entry or entry["status"] == "unavailable":
        return []
    key = _pool_key(heldout)
    base = raw / "salient" if key == "files" else raw / key / "salient"
    return [(f"salient/{Path(r['images']).stem}", base / r["images"], base / r["masks"])
            for r in entry.get(key, [])]


def _pool_key(heldout: bool | str) -> str:
    if heldout not in (False, True, "benchmark"):
        raise ValueError(f"heldout must be False, True or 'benchmark', got {heldout!r}")
    return "benchmark" if heldout == "benchmark" else "heldout" if heldout else "files"
