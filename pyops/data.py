"""Datasets of the MLP pipeline: MNIST, Fashion-MNIST (IDX files) and ``synthetic`` (random, timing only).

The IDX format (http://yann.lecun.com/exdb/mnist/, "FILE FORMATS"): a 4-byte magic number
``00 00 <dtype code> <ndim>``, then ``ndim`` big-endian uint32 dimension sizes, then the
``prod(dims)`` items, big-endian, row-major.  MNIST ships images as ``idx3`` (count, 28, 28) and
labels as ``idx1`` (count,), both unsigned bytes, usually gzip-compressed.  :func:`read_idx` takes
gzip or raw files -- told apart by the gzip magic bytes ``1f 8b``, never by the file name -- and
checks the magic, the dimensions and that the data is exactly as long as the header says.

Where :func:`load` looks, in order (the first place holding four valid files wins; every place
that was tried and why it failed is kept, printed with the source and listed in the error when
nothing works):

  1. ``data_dir`` (``--data-dir``): the four files, each ``<name>`` or ``<name>.gz``
  2. the cache ``$XDG_CACHE_HOME/pyops/<dataset>`` (default ``~/.cache/pyops/<dataset>``)
  3. system copies: for fashion-mnist Debian's package ``dataset-fashion-mnist``
     (``/usr/share/datasets/fashion-mnist``, installed by ``make setup``)
  4. a download from the dataset's usual mirrors into the cache: each file checked against its
     published MD5 while it streams into a temporary file in the cache folder, renamed to its
     final name only when complete and correct (a failed or interrupted download leaves nothing).

``synthetic`` is uniform random bytes with uniform random labels, MNIST-shaped: for timing only.
Its accuracy is chance (10 %) and means nothing; every output that shows it says so.
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import sys
import tempfile
import urllib.request
import zlib

import numpy as np
import torch

__all__ = ["DATASETS", "DataError", "Dataset", "IdxError", "batches", "load", "normalize", "read_idx"]


class DataError(RuntimeError):
    """No usable copy of a dataset (the message lists every place that was tried and why it failed)."""


class IdxError(ValueError):
    """A file is not a valid IDX file, or not the one expected (the message names the file and the problem)."""


# ---------------------------------------------------------------- the IDX reader
#: IDX dtype code (third magic byte) -> numpy dtype of the items (big-endian)
IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"


def _kind(dt: np.dtype) -> tuple[str, int]:
    return dt.kind, dt.itemsize


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as e:  # EOFError: truncated stream; BadGzipFile is an OSError
        raise IdxError(f"{path}: truncated or corrupt gzip data ({e})") from e


def read_idx(path: str, *, ndim: int | None = None, dtype=None) -> np.ndarray:
    """The array stored in the IDX file ``path`` (gzip or raw), after checking its magic number,
    dimensions and length; ``ndim`` / ``dtype`` (numpy dtype), when given, must match the header."""
    data = _read_bytes(path)
    if len(data) < 4:
        raise IdxError(f"{path}: {len(data)} bytes, too short for an IDX magic number (4 bytes)")
    zero, code, nd = int.from_bytes(data[:2], "big"), data[2], data[3]
    if zero != 0 or code not in IDX_DTYPES:
        raise IdxError(f"{path}: bad IDX magic number 0x{data[:4].hex()}; expected 0x0000<type><ndim> with type one "
                       f"of {', '.join(f'0x{c:02x}' for c in IDX_DTYPES)} (0x08 = unsigned byte)")
    item = IDX_DTYPES[code]
    if ndim is not None and nd != ndim:
        raise IdxError(f"{path}: IDX header says {nd} dimensions; expected {ndim} (magic 0x{data[:4].hex()})")
    if dtype is not None and _kind(item) != _kind(np.dtype(dtype)):
        raise IdxError(f"{path}: IDX items are {item} (type code 0x{code:02x}); expected {np.dtype(dtype)}")
    header = 4 + 4 * nd
    if len(data) < header:
        raise IdxError(f"{path}: truncated header: {nd} dimensions need {header} bytes, the file has {len(data)}")
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(nd))
    expected = header + int(np.prod(dims, dtype=np.int64)) * item.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "trailing bytes"
        raise IdxError(f"{path}: {what}: header says dims {dims} of {item} = {expected} bytes with the header, "
                       f"the data has {len(data)}")
    return np.frombuffer(data, dtype=item, offset=header).reshape(dims).astype(item.newbyteorder("="))


def write_idx(path: str, array: np.ndarray, *, compress: bool = False) -> None:
    """Write ``array`` as an IDX file (gzip-compressed when ``compress``); used to make test data."""
    codes = {_kind(v): k for k, v in IDX_DTYPES.items()}
    a = np.ascontiguousarray(array)
    code = codes[_kind(a.dtype)]
    blob = bytes([0, 0, code, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    blob += a.astype(a.dtype.newbyteorder(">")).tobytes()
    with open(path, "wb") as f:
        f.write(gzip.compress(blob, mtime=0) if compress else blob)


# ---------------------------------------------------------------- datasets
@dataclasses.dataclass(frozen=True)
class Spec:
    name: str
    classes: tuple[str, ...]
    #: base file name -> MD5 of the published .gz file
    files: dict
    #: URL prefixes, tried in order for each file
    mirrors: tuple[str, ...]
    #: read-only copies installed by the system (name, folder, how to get it)
    system_dirs: tuple[tuple[str, str, str], ...] = ()


FILE_ROLES = ("train_images", "train_labels", "test_images", "test_labels")
FILE_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

DATASETS = {
    # Checksums: the MD5s torchvision (torchvision/datasets/mnist.py, class MNIST) checks; the mirrors are
    # torchvision's (ossci-datasets) and TensorFlow's (cvdf-datasets) copies of Yann LeCun's original files.
    "mnist": Spec(
        name="mnist",
        classes=tuple(str(i) for i in range(10)),
        files=dict(zip(FILE_NAMES, ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
                                    "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c"))),
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "https://storage.googleapis.com/cvdf-datasets/mnist/",
                 "http://yann.lecun.com/exdb/mnist/"),
    ),
    # Checksums: the MD5s of the Fashion-MNIST README (github.com/zalandoresearch/fashion-mnist, "Get the
    # Data"), also in torchvision's FashionMNIST.  Debian's package recompresses the files (other .gz bytes,
    # same contents), so its copies are checked by the IDX reader, not by these MD5s.
    "fashion-mnist": Spec(
        name="fashion-mnist",
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot"),
        files=dict(zip(FILE_NAMES, ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
                                    "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310"))),
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                 "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"),
        system_dirs=(("Debian package dataset-fashion-mnist", "/usr/share/datasets/fashion-mnist",
                      "apt-get install dataset-fashion-mnist"),),
    ),
}
SYNTHETIC = "synthetic"
SYNTHETIC_NOTE = "SYNTHETIC random data (uniform pixels and labels): for timing only, accuracy is meaningless"


@dataclasses.dataclass
class Dataset:
    """Train and test split: images uint8 [N, 28, 28], labels int64 [N]; ``source`` says where they came from."""
    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: str
    classes: tuple[str, ...]
    synthetic: bool = False

    @property
    def label(self) -> str:
        """Name for reports; synthetic data says it is synthetic."""
        return f"{self.name} ({SYNTHETIC_NOTE})" if self.synthetic else self.name

    def subset(self, train: int | None = None, test: int | None = None) -> "Dataset":
        """The first ``train`` / ``test`` examples of each split (for quick runs and tests)."""
        return dataclasses.replace(
            self, train_images=self.train_images[:train], train_labels=self.train_labels[:train],
            test_images=self.test_images[:test], test_labels=self.test_labels[:test],
            source=self.source + (f" (subset: {train or 'all'} train, {test or 'all'} test)" if train or test else ""))


def normalize(images: torch.Tensor) -> torch.Tensor:
    """The seed's input transform, ToTensor + Normalize((0.5,), (0.5,)): uint8 [N, 28, 28] ->
    float32 [N, 784] = (x / 255 - 0.5) / 0.5, in [-1, 1]."""
    return images.reshape(images.shape[0], -1).to(torch.float32).div_(255).sub_(0.5).div_(0.5)


def batches(inputs: torch.Tensor, labels: torch.Tensor, batch_size: int, sampler=None):
    """Yield (inputs[idx], labels[idx]) for batches of indices from ``sampler`` (any iterable of
    indices: a RandomSampler, a DistributedSampler, ...), in order when None.  Indexing whole
    batches of in-memory tensors avoids a DataLoader's per-example collation."""
    if sampler is None:
        for i in range(0, len(inputs), batch_size):
            yield inputs[i:i + batch_size], labels[i:i + batch_size]
        return
    idx = torch.as_tensor(list(sampler), dtype=torch.int64)
    for i in range(0, len(idx), batch_size):
        j = idx[i:i + batch_size]
        yield inputs.index_select(0, j), labels.index_select(0, j)


def synthetic(train: int = 60000, test: int = 10000, seed: int = 0) -> Dataset:
    """MNIST-shaped uniform random images and labels (SYNTHETIC: for timing only)."""
    g = torch.Generator().manual_seed(seed)
    mk = lambda n: (torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8),  # noqa: E731
                    torch.randint(0, 10, (n,), generator=g, dtype=torch.int64))
    (a, b), (c, d) = mk(train), mk(test)
    return Dataset(SYNTHETIC, a, b, c, d, source=f"generated in memory, seed {seed} ({SYNTHETIC_NOTE})",
                   classes=tuple(str(i) for i in range(10)), synthetic=True)


def cache_root() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "pyops")


def _find(folder: str, base: str) -> str | None:
    for name in (base + ".gz", base):
        p = os.path.join(folder, name)
        if os.path.isfile(p):
            return p
    return None


def _read_folder(spec: Spec, folder: str) -> tuple:
    """The four arrays from ``folder`` as tensors, or IdxError/FileNotFoundError saying what is wrong."""
    if not os.path.isdir(folder):
        raise FileNotFoundError("does not exist")
    paths = {}
    for base in spec.files:
        p = _find(folder, base)
        if p is None:
            raise FileNotFoundError(f"missing {base} (or {base}.gz)")
        paths[base] = p
    out = []
    for split in ("train", "t10k"):
        ip, lp = paths[f"{split}-images-idx3-ubyte"], paths[f"{split}-labels-idx1-ubyte"]
        images, labels = read_idx(ip, ndim=3, dtype=np.uint8), read_idx(lp, ndim=1, dtype=np.uint8)
        if images.shape[1:] != (28, 28):
            raise IdxError(f"{ip}: images of {images.shape[1]}x{images.shape[2]} pixels; expected 28x28")
        if images.shape[0] != labels.shape[0]:
            raise IdxError(f"{ip} holds {images.shape[0]} images but {lp} holds {labels.shape[0]} labels; "
                           "expected one label per image")
        if labels.size and labels.max() >= len(spec.classes):
            raise IdxError(f"{lp}: label {int(labels.max())} out of range; expected 0..{len(spec.classes) - 1}")
        out += [torch.from_numpy(images), torch.from_numpy(labels).to(torch.int64)]
    return tuple(out)


def _md5(path: str) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download_file(url: str, dest: str, md5: str, timeout: float = 30.0) -> None:
    """Fetch ``url`` to ``dest``: streamed into a temporary file in dest's folder while its MD5 is
    computed, renamed to ``dest`` only when complete and equal to ``md5``; on any failure the
    temporary file is removed and the error raised (``dest`` is never partial)."""
    folder = os.path.dirname(os.path.abspath(dest))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(dest) + ".", suffix=".part")
    try:
        h = hashlib.md5()
        got = 0
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=timeout) as r:
            length = r.headers.get("Content-Length")
            for block in iter(lambda: r.read(1 << 16), b""):
                h.update(block)
                f.write(block)
                got += len(block)
        if length is not None and got != int(length):  # read(n) returns b"" when the server hangs up early
            raise IdxError(f"incomplete download: {got} of {length} bytes")
        if h.hexdigest() != md5:
            raise IdxError(f"checksum mismatch: MD5 {h.hexdigest()}, expected {md5}")
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _download(spec: Spec, folder: str, mirrors, tried: list, log) -> bool:
    """Download the missing files of ``spec`` into ``folder``; True if all four are there afterwards."""
    for base, md5 in spec.files.items():
        dest = os.path.join(folder, base + ".gz")
        if os.path.isfile(dest) and _md5(dest) == md5:
            continue
        for mirror in mirrors:
            url = mirror + base + ".gz"
            log(f"downloading {url}")
            try:
                download_file(url, dest, md5)
                break
            except Exception as e:  # noqa: BLE001 -- every failure is recorded and reported
                tried.append(f"download {url}: {type(e).__name__}: {e}")
        else:
            return False
    return True


def load(name: str, data_dir: str | None = None, *, cache: str | None = None, system_dirs=None,
         mirrors=None, download: bool = True, log=None) -> Dataset:
    """Dataset ``name`` ('mnist', 'fashion-mnist' or 'synthetic') from the first place that has it
    (see the module docstring for the order).  ``cache``, ``system_dirs`` and ``mirrors`` override
    the defaults (tests point them at temporary folders and a local server); ``download=False``
    never touches the network.  Raises DataError listing every place tried when none works."""
    if name == SYNTHETIC:
        return synthetic()
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; expected one of {', '.join([*DATASETS, SYNTHETIC])}")
    spec = DATASETS[name]
    log = log or (lambda msg: print(f"data: {msg}", file=sys.stderr, flush=True))
    cache = cache or os.path.join(cache_root(), name)
    places = []
    if data_dir is not None:
        places.append(("--data-dir", data_dir))
    places.append(("cache", cache))
    for label, folder, _how in (spec.system_dirs if system_dirs is None else system_dirs):
        places.append((label, folder))
    tried: list[str] = []

    def attempt(label, folder):
        try:
            arrays = _read_folder(spec, folder)
        except (OSError, IdxError) as e:
            tried.append(f"{label} {folder}: {e}")
            return None
        skipped = f"; skipped: {' | '.join(tried)}" if tried else ""
        return Dataset(name, *arrays, source=f"{label} {folder}{skipped}", classes=spec.classes)

    for label, folder in places:
        ds = attempt(label, folder)
        if ds is not None:
            return ds
    if download:
        if _download(spec, cache, spec.mirrors if mirrors is None else mirrors, tried, log):
            ds = attempt("downloaded to the cache", cache)
            if ds is not None:
                return ds
    else:
        tried.append("download: not attempted (download=False)")
    hints = [how for _l, _f, how in (spec.system_dirs if system_dirs is None else system_dirs)]
    raise DataError(f"{name}: no usable copy found. Tried, in order:\n  " + "\n  ".join(tried) +
                    f"\nPut the four IDX files ({', '.join(spec.files)}, gzip or raw) in a folder and pass "
                    f"--data-dir" + (f", or run `{hints[0]}`" if hints else "") + ", or allow network access.")
