import hashlib
import http.server
import io
import socket
import struct
import threading
import time
import warnings
import zipfile

import cv2
import numpy as np
import pytest
import skimage.data

from defocus import datasets
from defocus.datasets import DownloadError, fetch, gather, salient_pool, sharp_pool
from defocus.images import load_image


# ---------------------------------------------------------------- a local HTTP server
class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files`` ({path: bytes}); honours ``Range: bytes=N-`` with 206.

    ``server.cut = (K, how)`` makes the next response stop after K body bytes:
    ``how`` "reset" aborts the connection (TCP RST), "close" closes it cleanly
    while the Content-Length promised more.
    """

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        srv = self.server
        rng = self.headers.get("Range")
        srv.requests.append((self.path, rng))
        body = srv.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start, status = 0, 200
        if rng and srv.honour_range:
            assert rng.startswith("bytes=") and rng.endswith("-"), rng
            start = int(rng[len("bytes="):-1])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        part = body[start:]
        self.send_response(status)
        self.send_header("Content-Length", str(len(part)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.end_headers()
        if srv.cut is None:
            self.wfile.write(part)
            return
        (k, how), srv.cut = srv.cut, None
        self.wfile.write(part[:k])
        self.wfile.flush()
        time.sleep(0.2)  # let the client read what was sent
        self.close_connection = True
        if how == "reset":  # close at once with linger 0 (no FIN first, as socketserver would send)
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()  # really closed once finish() has closed rfile and wfile


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.files, srv.requests, srv.cut, srv.honour_range = {}, [], None, True
    srv.url = f"http://127.0.0.1:{srv.server_port}"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def _payload(n=300_000, seed=0):
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def _sha(data):
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- fetch
def test_fetch_downloads_and_checks(tmp_path, server):
    data = _payload()
    server.files["/a.bin"] = data
    dest = tmp_path / "dl" / "a.bin"
    assert fetch(server.url + "/a.bin", dest, _sha(data), progress=False) == dest
    assert dest.read_bytes() == data
    assert not (tmp_path / "dl" / "a.bin.part").exists()
    assert server.requests == [("/a.bin", None)]
    # already there with the right checksum: no second request
    assert fetch(server.url + "/a.bin", dest, _sha(data), progress=False) == dest
    assert len(server.requests) == 1
    # without a checksum: kept, with a warning that gives the SHA-256
    with pytest.warns(UserWarning, match=_sha(data)):
        fetch(server.url + "/a.bin", tmp_path / "b.bin", progress=False)
    assert (tmp_path / "b.bin").read_bytes() == data


def test_fetch_wrong_checksum_leaves_nothing(tmp_path, server):
    server.files["/a.bin"] = _payload()
    dest = tmp_path / "a.bin"
    with pytest.raises(DownloadError, match="SHA-256 mismatch"):
        fetch(server.url + "/a.bin", dest, "0" * 64, progress=False)
    assert not dest.exists() and not (tmp_path / "a.bin.part").exists()
    assert list(tmp_path.iterdir()) == []


def test_fetch_http_errors(tmp_path, server):
    with pytest.raises(DownloadError, match="404"):
        fetch(server.url + "/missing.zip", tmp_path / "m.zip", progress=False)
    assert list(tmp_path.iterdir()) == []
    port = server.server_port
    server.shutdown()
    server.server_close()
    with pytest.raises(DownloadError):
        fetch(f"http://127.0.0.1:{port}/a.bin", tmp_path / "x.bin", progress=False, timeout=5)


def test_fetch_resumes_an_interrupted_download(tmp_path, server):
    data = _payload(400_000, seed=1)
    server.files["/big.zip"] = data
    dest, part = tmp_path / "big.zip", tmp_path / "big.zip.part"
    server.cut = (150_000, "reset")
    with pytest.raises(DownloadError, match="partial download kept"):
        fetch(server.url + "/big.zip", dest, _sha(data), progress=False)
    assert not dest.exists() and part.exists()
    n = part.stat().st_size
    assert 0 < n <= 150_000
    assert part.read_bytes() == data[:n]
    assert fetch(server.url + "/big.zip", dest, _sha(data), progress=False) == dest
    assert server.requests == [("/big.zip", None), ("/big.zip", f"bytes={n}-")]
    assert dest.read_bytes() == data
    assert not part.exists()


def test_fetch_restarts_when_the_server_ignores_range(tmp_path, server):
    data = _payload(200_000, seed=2)
    server.files["/a.bin"] = data
    part = tmp_path / "a.bin.part"
    part.write_bytes(b"x" * 1000)  # junk that must not survive
    server.honour_range = False
    fetch(server.url + "/a.bin", tmp_path / "a.bin", _sha(data), progress=False)
    assert server.requests == [("/a.bin", "bytes=1000-")]
    assert (tmp_path / "a.bin").read_bytes() == data and not part.exists()


def test_fetch_complete_part_file_and_range_past_the_end(tmp_path, server):
    data = _payload(50_000, seed=3)
    server.files["/a.bin"] = data
    (tmp_path / "a.bin.part").write_bytes(data)  # complete, but never renamed
    fetch(server.url + "/a.bin", tmp_path / "a.bin", _sha(data), progress=False)
    assert server.requests == [("/a.bin", f"bytes={len(data)}-")]  # answered 416
    assert (tmp_path / "a.bin").read_bytes() == data


def test_fetch_connection_closed_early_keeps_the_part_file(tmp_path, server):
    data = _payload(400_000, seed=4)
    server.files["/big.zip"] = data
    server.cut = (150_000, "close")
    with pytest.raises(DownloadError):
        fetch(server.url + "/big.zip", tmp_path / "big.zip", _sha(data), progress=False)
    assert (tmp_path / "big.zip.part").exists()  # kept, so a re-run can resume


def test_fetch_connection_closed_early_without_checksum(tmp_path, server):
    data = _payload(400_000, seed=5)
    server.files["/big.zip"] = data
    server.cut = (150_000, "close")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the 'no checksum recorded' warning
        with pytest.raises(DownloadError):
            fetch(server.url + "/big.zip", tmp_path / "big.zip", progress=False)
    assert not (tmp_path / "big.zip").exists()


# ---------------------------------------------------------------- gather from a mirror
def _img(path, seed, h=64, w=72, grey=False):
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (h, w) if grey else (h, w, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), arr)
    return path


def _mask(path, seed, h=64, w=72):
    m = np.zeros((h, w), np.uint8)
    m[10 + seed : 40, 20:50] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), m)
    return path


def _params(mirror="", **urls):
    return {"mirror": str(mirror), "sharp": 2, "sharp_heldout": 1, "salient": 2, "salient_heldout": 1,
            "urls": urls, "sha256": {}}


@pytest.fixture
def mirror(tmp_path):
    root = tmp_path / "mirror"
    coco = root / "sharp" / "coco"
    for i, stem in enumerate("acde"):
        _img(coco / f"{stem}.jpg", i)
    coco.joinpath("b.jpg").write_bytes(np.random.default_rng(9).integers(0, 256, 600, dtype=np.uint8).tobytes())
    il = root / "sharp" / "ilsvrc"
    for i, name in enumerate(["n1.JPEG", "n2.jpg", "n3.JPEG", "n4.jpg"]):
        _img(il / name, 10 + i, grey=(i == 1))
    _img(il / ".hidden.jpg", 20)  # dot files are not part of a dataset
    (il / "notes.txt").write_text("not an image")
    duts = root / "salient" / "duts-te"
    for i in range(1, 5):
        _img(duts / "images" / f"s{i}.jpg", 30 + i)
        _mask(duts / "masks" / f"s{i}.png", i)
    _img(duts / "images" / "s0.jpg", 30)  # no mask: not a record
    _mask(duts / "masks" / "s9.png", 9)  # no image: not a record
    dbd = root / "dbd" / "dut"
    for i in (1, 2):
        _img(dbd / "images" / f"d{i}.jpg", 40 + i)
        _mask(dbd / "gt" / f"d{i}.png", i)
    return root


def test_gather_from_a_mirror(tmp_path, mirror):
    out, downloads = tmp_path / "raw", tmp_path / "downloads"
    with pytest.warns(UserWarning, match="coco: skipped 1 unreadable"):
        manifest = gather(_params(mirror), out, downloads, progress=False)
    assert set(manifest) == set(datasets.DATASETS)  # no scikit-image fallback
    coco = manifest["coco"]
    assert coco["status"] == "ok" and coco["comparable"] is True
    assert coco["source"] == f"mirror {mirror / 'sharp' / 'coco'}"
    assert coco["files"] == [{"file": "c.jpg"}, {"file": "d.jpg"}]
    assert coco["heldout"] == [{"file": "a.jpg"}]  # held-out files first: the same whatever the training size
    assert len(coco["skipped"]) == 1 and "b.jpg" in coco["skipped"][0]
    for name in ("c.jpg", "d.jpg"):
        assert (out / "coco" / name).read_bytes() == (mirror / "sharp" / "coco" / name).read_bytes()
    assert (out / "heldout" / "coco" / "a.jpg").read_bytes() == (mirror / "sharp" / "coco" / "a.jpg").read_bytes()
    assert sorted(p.name for p in (out / "coco").iterdir()) == ["c.jpg", "d.jpg"]
    il = manifest["ilsvrc"]
    assert il["files"] == [{"file": "n2.jpg"}, {"file": "n3.JPEG"}] and il["heldout"] == [{"file": "n1.JPEG"}]
    assert il["skipped"] == []
    sal = manifest["salient"]
    assert sal["files"] == [{"images": "images/s2.jpg", "masks": "masks/s2.png"},
                            {"images": "images/s3.jpg", "masks": "masks/s3.png"}]
    assert sal["heldout"] == [{"images": "images/s1.jpg", "masks": "masks/s1.png"}]
    src = mirror / "salient" / "duts-te"
    assert (out / "salient" / "masks" / "s2.png").read_bytes() == (src / "masks" / "s2.png").read_bytes()
    assert (out / "heldout" / "salient" / "images" / "s1.jpg").read_bytes() == (src / "images" / "s1.jpg").read_bytes()
    dbd = manifest["dbd"]  # all of it, nothing held out
    assert dbd["status"] == "ok" and dbd["heldout"] == []
    assert dbd["files"] == [{"images": "images/d1.jpg", "gt": "gt/d1.png"},
                            {"images": "images/d2.jpg", "gt": "gt/d2.png"}]
    assert manifest["rtf"] == {"status": "unavailable", "source": None, "comparable": False,
                               "files": [], "heldout": [], "skipped": []}
    assert not (out / "rtf").exists() and not downloads.exists()
    # the pools read back what was copied, sources interleaved
    pool = sharp_pool(out, manifest)
    assert [i for i, _ in pool] == ["coco/c", "ilsvrc/n2", "coco/d", "ilsvrc/n3"]
    assert all(p.is_file() for _, p in pool)
    assert [i for i, _ in sharp_pool(out, manifest, heldout=True)] == ["coco/a", "ilsvrc/n1"]
    held = salient_pool(out, manifest, heldout=True)
    assert [(i, p.name, m.name) for i, p, m in held] == [("salient/s1", "s1.jpg", "s1.png")]
    assert all(p.is_file() and m.is_file() for _, p, m in held)
    # a grey JPEG is a usable photo (the loader makes it RGB) and is copied as it is
    assert load_image(out / "ilsvrc" / "n2.jpg").shape == (64, 72, 3)
    assert (out / "ilsvrc" / "n2.jpg").read_bytes() == (mirror / "sharp" / "ilsvrc" / "n2.jpg").read_bytes()


def test_gather_reserves_the_benchmark_files_at_the_end(tmp_path, mirror):
    """The last readable files of each listing are the benchmark's, whatever the training sizes ask."""
    params = dict(_params(mirror), sharp=10, salient=10, benchmark={"sharp": 1, "salient": 2})
    with pytest.warns(UserWarning, match="coco: skipped 1 unreadable"):
        manifest = gather(params, tmp_path / "raw", tmp_path / "downloads", progress=False)
    coco, il, sal = manifest["coco"], manifest["ilsvrc"], manifest["salient"]
    assert coco["benchmark"] == [{"file": "e.jpg"}] and il["benchmark"] == [{"file": "n4.jpg"}]
    assert {"file": "e.jpg"} not in coco["files"] + coco["heldout"]
    assert sorted(r["file"] for r in coco["files"] + coco["heldout"]) == ["a.jpg", "c.jpg", "d.jpg"]
    assert [r["images"] for r in sal["benchmark"]] == ["images/s3.jpg", "images/s4.jpg"]
    assert sorted(r["images"] for r in sal["files"] + sal["heldout"]) == ["images/s1.jpg", "images/s2.jpg"]
    assert (tmp_path / "raw" / "benchmark" / "coco" / "e.jpg").exists()
    raw = tmp_path / "raw"
    assert [i for i, _ in datasets.sharp_pool(raw, manifest, "benchmark")] == ["coco/e", "ilsvrc/n4"]
    assert [i for i, _, _ in datasets.salient_pool(raw, manifest, "benchmark")] == ["salient/s3", "salient/s4"]
    with pytest.raises(ValueError, match="heldout"):
        datasets.sharp_pool(raw, manifest, "test")


def test_gather_short_dataset_takes_what_there_is(tmp_path, mirror):
    params = _params(mirror)
    params["sharp"], params["sharp_heldout"] = 5, 2  # coco has 4 readable photos
    with pytest.warns(UserWarning, match="coco: skipped"):
        manifest = gather(params, tmp_path / "raw", tmp_path / "dl", progress=False)
    assert [r["file"] for r in manifest["coco"]["files"]] == ["a.jpg", "c.jpg", "d.jpg", "e.jpg"]
    assert manifest["coco"]["heldout"] == []


# ---------------------------------------------------------------- gather from a URL
def _duts_zip(n=4):
    buf = io.BytesIO()
    tmp = {}
    with zipfile.ZipFile(buf, "w") as z:
        for i in range(1, n + 1):
            img = np.random.default_rng(50 + i).integers(0, 256, (64, 64, 3), dtype=np.uint8)
            ok, jpg = cv2.imencode(".jpg", img)
            m = np.zeros((64, 64), np.uint8)
            m[20:40, 10 + i : 50] = 255
            ok2, png = cv2.imencode(".png", m)
            assert ok and ok2
            z.writestr(f"DUTS-TE/DUTS-TE-Image/t{i}.jpg", jpg.tobytes())
            z.writestr(f"DUTS-TE/DUTS-TE-Mask/t{i}.png", png.tobytes())
            tmp[f"t{i}"] = (jpg.tobytes(), png.tobytes())
    return buf.getvalue(), tmp


NO_URLS = {"coco": "", "ilsvrc": "", "salient": "", "rtf": "", "dbd": ""}


def test_gather_from_a_url(tmp_path, server):
    archive, members = _duts_zip()
    server.files["/duts.zip"] = archive
    params = _params("", **{**NO_URLS, "salient": server.url + "/duts.zip"})
    params["sha256"] = {"salient": _sha(archive)}
    out, downloads = tmp_path / "raw", tmp_path / "downloads"
    with pytest.warns(UserWarning, match="scikit-image"):  # no sharp photos anywhere
        manifest = gather(params, out, downloads, progress=False)
    sal = manifest["salient"]
    assert sal["status"] == "ok" and sal["comparable"] is True
    assert sal["source"] == f"url {server.url}/duts.zip"
    assert sal["files"] == [{"images": "images/t2.jpg", "masks": "masks/t2.png"},
                            {"images": "images/t3.jpg", "masks": "masks/t3.png"}]
    assert sal["heldout"] == [{"images": "images/t1.jpg", "masks": "masks/t1.png"}]
    for stem, base in (("t2", out / "salient"), ("t3", out / "salient"), ("t1", out / "heldout" / "salient")):
        assert (base / "images" / f"{stem}.jpg").read_bytes() == members[stem][0]
        assert (base / "masks" / f"{stem}.png").read_bytes() == members[stem][1]
    assert (downloads / "salient-duts.zip").read_bytes() == archive
    for name in ("coco", "ilsvrc", "rtf", "dbd"):
        assert manifest[name]["status"] == "unavailable"
    assert server.requests == [("/duts.zip", None)]
    # a second run uses the archive already downloaded and unpacked
    with pytest.warns(UserWarning, match="scikit-image"):
        again = gather(params, tmp_path / "raw2", downloads, progress=False)
    assert again["salient"]["files"] == sal["files"]
    assert len(server.requests) == 1


def test_gather_url_with_wrong_checksum_is_unavailable(tmp_path, server, capsys):
    archive, _ = _duts_zip(3)
    server.files["/duts.zip"] = archive
    params = _params("", **{**NO_URLS, "salient": server.url + "/duts.zip"})
    params["sha256"] = {"salient": _sha(archive[:-1])}
    with pytest.warns(UserWarning, match="scikit-image"):
        manifest = gather(params, tmp_path / "raw", tmp_path / "downloads", progress=False)
    assert manifest["salient"]["status"] == "unavailable"
    assert "SHA-256 mismatch" in capsys.readouterr().err
    assert list((tmp_path / "downloads").iterdir()) == []
    assert not (tmp_path / "raw" / "salient").exists()



@pytest.mark.filterwarnings("ignore:.*no checksum recorded")
def test_gather_two_urls_with_the_same_file_name(tmp_path, server):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i in range(3):
            z.writestr(f"val2017/c{i}.jpg", cv2.imencode(".jpg", np.full((64, 64, 3), 40 * i, np.uint8))[1].tobytes())
    server.files["/a/data.zip"] = buf.getvalue()
    server.files["/b/data.zip"] = _duts_zip(3)[0]
    params = _params("", **{**NO_URLS, "coco": server.url + "/a/data.zip", "salient": server.url + "/b/data.zip"})
    # no checksums recorded (the default for URLs set in params.yaml): with them, fetch would re-download
    manifest = gather(params, tmp_path / "raw", tmp_path / "downloads", progress=False)
    assert [r["file"] for r in manifest["coco"]["files"]] == ["c1.jpg", "c2.jpg"]
    assert len(manifest["salient"]["files"]) == 2

def test_unpack_rejects_unsafe_paths_and_non_archives(tmp_path):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("../evil.txt", "x")
    with pytest.raises(DownloadError, match="unsafe"):
        datasets.unpack(bad, tmp_path / "into")
    assert not (tmp_path / "evil.txt").exists()
    (tmp_path / "plain.bin").write_bytes(b"neither zip nor tar")
    with pytest.raises(DownloadError, match="neither"):
        datasets.unpack(tmp_path / "plain.bin", tmp_path / "into2")


# ---------------------------------------------------------------- the scikit-image fallback
@pytest.mark.parametrize("where", ["none", "missing"])
def test_gather_falls_back_to_scikit_image(tmp_path, where):
    mirror = "" if where == "none" else tmp_path / "no-such-mirror"
    out = tmp_path / "raw"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # only the one warning below
        with pytest.warns(UserWarning, match="NOT comparable"):
            manifest = gather(_params(mirror, **NO_URLS), out, tmp_path / "dl", progress=False)
    for name in datasets.DATASETS:
        assert manifest[name]["status"] == "unavailable"
    sk = manifest["skimage"]
    assert sk["status"] == "fallback" and sk["comparable"] is False
    assert sk["files"] == [{"file": "astronaut.png"}, {"file": "chelsea.png"}]
    for name in ("astronaut", "chelsea"):
        got = cv2.imread(str(out / "skimage" / f"{name}.png"))[:, :, ::-1]
        np.testing.assert_array_equal(got, getattr(skimage.data, name)())
    assert [i for i, _ in sharp_pool(out, manifest)] == ["skimage/astronaut", "skimage/chelsea"]
    assert sharp_pool(out, manifest, heldout=True) == [] and salient_pool(out, manifest) == []
