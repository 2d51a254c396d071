"""pyops.data: the IDX reader, where datasets come from, and downloads -- all on files made here and a
local http.server on 127.0.0.1; never the internet."""
import functools
import gzip
import hashlib
import http.server
import os
import threading

import numpy as np
import pytest
import torch

from pyops import data as D

NAMES = D.FILE_NAMES  # train images, train labels, test images, test labels


@pytest.fixture(autouse=True)
def _no_internet(monkeypatch):
    # Any download a test forgets to point at the local server goes to the discard port of 127.0.0.1 and fails.
    for name, spec in list(D.DATASETS.items()):
        monkeypatch.setitem(D.DATASETS, name, D.Spec(spec.name, spec.classes, spec.files, ("http://127.0.0.1:9/",),
                                                     spec.system_dirs))


def make_arrays(n_train=50, n_test=20, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8), rng.integers(0, 10, n_train, dtype=np.uint8),
            rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8), rng.integers(0, 10, n_test, dtype=np.uint8)]


def make_dir(folder, arrays=None, compress=True):
    os.makedirs(folder, exist_ok=True)
    arrays = make_arrays() if arrays is None else arrays
    for name, a in zip(NAMES, arrays):
        D.write_idx(os.path.join(folder, name + (".gz" if compress else "")), a, compress=compress)
    return arrays


def load_local(name="mnist", data_dir=None, cache=None, **kw):
    """load() that can only see the given folders (no system copies, no real cache)."""
    kw.setdefault("system_dirs", ())
    kw.setdefault("download", False)
    return D.load(name, data_dir, cache=cache or "/nonexistent/pyops-test-cache", log=lambda m: None, **kw)


# ---------------------------------------------------------------- the IDX reader
@pytest.mark.parametrize("compress", [True, False], ids=["gz", "raw"])
def test_read_idx_roundtrip(tmp_path, compress):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    p = str(tmp_path / "x")
    D.write_idx(p, a, compress=compress)
    assert (open(p, "rb").read(2) == D.GZIP_MAGIC) == compress
    out = D.read_idx(p, ndim=3, dtype=np.uint8)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 4) and (out == a).all()
    assert out.flags.writeable  # torch.from_numpy needs no copy-on-warning


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.float32, np.float64])
def test_read_idx_other_types_big_endian(tmp_path, dtype):
    a = (np.arange(12) - 5).astype(dtype).reshape(3, 4)
    p = str(tmp_path / "x.idx")
    D.write_idx(p, a)
    raw = open(p, "rb").read()
    assert raw[3] == 2 and int.from_bytes(raw[4:8], "big") == 3  # magic ndim, first dim big-endian
    out = D.read_idx(p)
    assert out.dtype == np.dtype(dtype) and (out == a).all()


def test_gzip_detected_by_magic_not_name(tmp_path):
    a = np.arange(10, dtype=np.uint8)
    D.write_idx(str(tmp_path / "looks-raw"), a, compress=True)
    D.write_idx(str(tmp_path / "looks-gz.gz"), a, compress=False)
    assert (D.read_idx(str(tmp_path / "looks-raw")) == a).all()
    assert (D.read_idx(str(tmp_path / "looks-gz.gz")) == a).all()


def test_truncated_raw(tmp_path):
    p = str(tmp_path / "x")
    D.write_idx(p, np.zeros((5, 28, 28), np.uint8))
    blob = open(p, "rb").read()
    open(p, "wb").write(blob[:-1])
    with pytest.raises(D.IdxError, match=r"truncated: header says dims \(5, 28, 28\)"):
        D.read_idx(p)
    open(p, "wb").write(blob[:10])  # inside the dimension list
    with pytest.raises(D.IdxError, match="truncated header: 3 dimensions need 16 bytes"):
        D.read_idx(p)
    open(p, "wb").write(blob + b"\0")
    with pytest.raises(D.IdxError, match="trailing bytes"):
        D.read_idx(p)


def test_truncated_gzip(tmp_path):
    p = str(tmp_path / "x.gz")
    D.write_idx(p, np.random.default_rng(0).integers(0, 256, (20, 28, 28), dtype=np.uint8), compress=True)
    blob = open(p, "rb").read()
    open(p, "wb").write(blob[: len(blob) // 2])
    with pytest.raises(D.IdxError, match="truncated or corrupt gzip data"):
        D.read_idx(p)


def test_gzip_of_truncated_idx(tmp_path):
    # a complete gzip stream whose content is a cut IDX file: caught by the length check
    p = str(tmp_path / "x.gz")
    D.write_idx(str(tmp_path / "raw"), np.zeros((4, 28, 28), np.uint8))
    open(p, "wb").write(gzip.compress(open(tmp_path / "raw", "rb").read()[:-100]))
    with pytest.raises(D.IdxError, match="truncated"):
        D.read_idx(p)


@pytest.mark.parametrize("magic, match", [
    (b"\x01\x00\x08\x01", "bad IDX magic number 0x01000801"),
    (b"\x00\x00\x07\x01", "bad IDX magic number 0x00000701"),
    (b"\x1f\x8c\x08\x01", "bad IDX magic number"),
])
def test_bad_magic(tmp_path, magic, match):
    p = str(tmp_path / "x")
    open(p, "wb").write(magic + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(D.IdxError, match=match):
        D.read_idx(p)


def test_too_short_for_magic(tmp_path):
    p = str(tmp_path / "x")
    open(p, "wb").write(b"\0\0")
    with pytest.raises(D.IdxError, match="too short for an IDX magic number"):
        D.read_idx(p)


def test_wrong_ndim_and_dtype(tmp_path):
    p = str(tmp_path / "x")
    D.write_idx(p, np.zeros(7, np.uint8))
    with pytest.raises(D.IdxError, match="IDX header says 1 dimensions; expected 3"):
        D.read_idx(p, ndim=3)
    D.write_idx(p, np.zeros(7, np.int32))
    with pytest.raises(D.IdxError, match="expected uint8"):
        D.read_idx(p, dtype=np.uint8)


# ---------------------------------------------------------------- datasets from folders
@pytest.mark.parametrize("compress", [True, False], ids=["gz", "raw"])
def test_load_data_dir(tmp_path, compress):
    arrays = make_dir(str(tmp_path / "d"), compress=compress)
    ds = load_local("fashion-mnist", str(tmp_path / "d"))
    assert ds.source.startswith("--data-dir") and not ds.synthetic
    assert ds.train_images.dtype == torch.uint8 and ds.train_images.shape == (50, 28, 28)
    assert ds.train_labels.dtype == torch.int64 and ds.test_labels.shape == (20,)
    assert (ds.train_images.numpy() == arrays[0]).all() and (ds.test_labels.numpy() == arrays[3]).all()
    assert ds.classes[0] == "T-shirt/top"


def test_count_mismatch(tmp_path):
    arrays = make_arrays()
    arrays[1] = arrays[1][:49]
    make_dir(str(tmp_path / "d"), arrays)
    with pytest.raises(D.DataError, match="holds 50 images but .*train-labels-idx1-ubyte.gz holds 49 labels"):
        load_local("mnist", str(tmp_path / "d"))


def test_labels_out_of_range_and_image_size(tmp_path):
    arrays = make_arrays()
    arrays[3][0] = 10
    make_dir(str(tmp_path / "d"), arrays)
    with pytest.raises(D.DataError, match="label 10 out of range; expected 0..9"):
        load_local("mnist", str(tmp_path / "d"))
    arrays = make_arrays()
    arrays[0] = np.zeros((50, 28, 27), np.uint8)
    make_dir(str(tmp_path / "e"), arrays)
    with pytest.raises(D.DataError, match="images of 28x27 pixels; expected 28x28"):
        load_local("mnist", str(tmp_path / "e"))


def test_swapped_files_caught(tmp_path):
    d = str(tmp_path / "d")
    make_dir(d)
    os.rename(os.path.join(d, NAMES[0] + ".gz"), os.path.join(d, "tmp"))
    os.rename(os.path.join(d, NAMES[1] + ".gz"), os.path.join(d, NAMES[0] + ".gz"))
    os.rename(os.path.join(d, "tmp"), os.path.join(d, NAMES[1] + ".gz"))
    with pytest.raises(D.DataError, match="IDX header says 1 dimensions; expected 3"):
        load_local("mnist", d)


def test_source_order(tmp_path):
    make_dir(str(tmp_path / "data"), make_arrays(n_train=11))
    make_dir(str(tmp_path / "cache"), make_arrays(n_train=12))
    make_dir(str(tmp_path / "system"), make_arrays(n_train=13))
    system = (("system copy", str(tmp_path / "system"), "install it"),)
    kw = dict(cache=str(tmp_path / "cache"), system_dirs=system)
    assert len(load_local("mnist", str(tmp_path / "data"), **kw).train_labels) == 11
    assert len(load_local("mnist", None, **kw).train_labels) == 12
    ds = load_local("mnist", str(tmp_path / "nothing-here"), cache=str(tmp_path / "no-cache"), system_dirs=system)
    assert len(ds.train_labels) == 13
    # what was skipped, and why, travels with the source
    assert "--data-dir" in ds.source and "does not exist" in ds.source and ds.source.startswith("system copy")
    # a broken copy is skipped (and reported), not used
    os.remove(tmp_path / "cache" / (NAMES[2] + ".gz"))
    ds = load_local("mnist", None, **kw)
    assert len(ds.train_labels) == 13 and "missing t10k-images-idx3-ubyte" in ds.source


def test_nothing_found_lists_every_attempt(tmp_path):
    srv = _Server(tmp_path / "empty-server")
    try:
        with pytest.raises(D.DataError) as e:
            D.load("fashion-mnist", str(tmp_path / "d"), cache=str(tmp_path / "c"), log=lambda m: None,
                   system_dirs=(("Debian package x", str(tmp_path / "deb"), "apt-get install x"),),
                   mirrors=(srv.url + "/a/", srv.url + "/b/"))
    finally:
        srv.close()
    msg = str(e.value)
    for needle in ("--data-dir " + str(tmp_path / "d"), "cache " + str(tmp_path / "c"),
                   "Debian package x " + str(tmp_path / "deb"), srv.url + "/a/train-images-idx3-ubyte.gz",
                   srv.url + "/b/train-images-idx3-ubyte.gz", "404", "apt-get install x"):
        assert needle in msg
    assert not os.listdir(tmp_path / "c")  # no partial files left in the cache


def test_unknown_dataset():
    with pytest.raises(D.DataError, match="unknown dataset 'cifar'; expected one of mnist, fashion-mnist, synthetic"):
        D.load("cifar")


def test_synthetic_is_labelled():
    ds = D.load("synthetic")
    assert ds.synthetic and "SYNTHETIC" in ds.label and "timing only" in ds.source
    assert ds.train_images.shape == (60000, 28, 28) and ds.test_images.shape == (10000, 28, 28)
    assert int(ds.train_labels.max()) == 9 and int(ds.train_labels.min()) == 0


def test_normalize_and_batches():
    img = torch.tensor([[0, 255], [51, 102]], dtype=torch.uint8).reshape(1, 2, 2)
    x = D.normalize(img)
    assert x.shape == (1, 4) and x.dtype == torch.float32
    torch.testing.assert_close(x, torch.tensor([[-1.0, 1.0, 51 / 255 * 2 - 1, 102 / 255 * 2 - 1]]))
    xs, ys = torch.arange(10.0).unsqueeze(1), torch.arange(10)
    assert [len(b[1]) for b in D.batches(xs, ys, 4)] == [4, 4, 2]
    got = torch.cat([b[1] for b in D.batches(xs, ys, 3, sampler=[9, 0, 5, 1])])
    assert got.tolist() == [9, 0, 5, 1]


# ---------------------------------------------------------------- downloads (local server only)
class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        if self.path.startswith("/short/"):  # promises the whole file, sends half, hangs up
            path = self.translate_path(self.path.replace("/short/", "/good/", 1))
            body = open(path, "rb").read()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()


class _Server:
    """http.server on 127.0.0.1 (a free port) serving ``root``, in a thread."""

    def __init__(self, root):
        os.makedirs(root, exist_ok=True)
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def server(tmp_path):
    """A server whose /good/ holds four gz IDX files; yields (server, {name: md5})."""
    make_dir(str(tmp_path / "www" / "good"))
    md5 = {n: hashlib.md5(open(tmp_path / "www" / "good" / (n + ".gz"), "rb").read()).hexdigest() for n in NAMES}
    srv = _Server(tmp_path / "www")
    yield srv, md5
    srv.close()


def test_download_file_ok(tmp_path, server):
    srv, md5 = server
    dest = str(tmp_path / "dl" / "f.gz")
    D.download_file(f"{srv.url}/good/{NAMES[0]}.gz", dest, md5[NAMES[0]])
    assert hashlib.md5(open(dest, "rb").read()).hexdigest() == md5[NAMES[0]]
    assert os.listdir(tmp_path / "dl") == ["f.gz"]


def test_checksum_mismatch_leaves_no_file(tmp_path, server):
    srv, _ = server
    dest = str(tmp_path / "dl" / "f.gz")
    with pytest.raises(D.IdxError, match="checksum mismatch: MD5 [0-9a-f]{32}, expected 0{32}"):
        D.download_file(f"{srv.url}/good/{NAMES[0]}.gz", dest, "0" * 32)
    assert os.listdir(tmp_path / "dl") == []


def test_interrupted_download_leaves_no_file(tmp_path, server):
    srv, md5 = server
    dest = str(tmp_path / "dl" / "f.gz")
    with pytest.raises(D.IdxError, match=r"incomplete download: \d+ of \d+ bytes"):
        D.download_file(f"{srv.url}/short/{NAMES[0]}.gz", dest, md5[NAMES[0]])
    assert os.listdir(tmp_path / "dl") == []


def test_load_downloads_into_cache(tmp_path, server, monkeypatch):
    srv, md5 = server
    spec = D.DATASETS["mnist"]
    monkeypatch.setitem(D.DATASETS, "mnist", D.Spec("mnist", spec.classes, md5, (), ()))
    cache = str(tmp_path / "cache")
    logged = []
    ds = D.load("mnist", cache=cache, log=logged.append,
                mirrors=(srv.url + "/missing/", srv.url + "/short/", srv.url + "/good/"))
    assert ds.source.startswith("downloaded to the cache") and len(ds.train_labels) == 50
    assert "404" in ds.source and "incomplete download" in ds.source  # the failed mirrors are reported
    assert sorted(os.listdir(cache)) == sorted(n + ".gz" for n in NAMES)  # final names only, no .part
    assert any("/good/train-images" in m for m in logged)
    # afterwards the cache serves it without any network
    again = D.load("mnist", cache=cache, mirrors=(), download=False)
    assert again.source.startswith("cache") and torch.equal(again.train_images, ds.train_images)


def test_download_checksum_mismatch_via_load(tmp_path, server, monkeypatch):
    srv, md5 = server
    bad = dict(md5, **{NAMES[2]: "f" * 32})
    spec = D.DATASETS["mnist"]
    monkeypatch.setitem(D.DATASETS, "mnist", D.Spec("mnist", spec.classes, bad, (), ()))
    cache = str(tmp_path / "cache")
    with pytest.raises(D.DataError, match="t10k-images-idx3-ubyte.gz: IdxError: checksum mismatch"):
        D.load("mnist", cache=cache, log=lambda m: None, mirrors=(srv.url + "/good/",))
    # the two files before it were complete and verified; the mismatching one left nothing behind
    assert sorted(os.listdir(cache)) == sorted(n + ".gz" for n in NAMES[:2])
