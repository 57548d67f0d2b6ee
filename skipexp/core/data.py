"""Datasets as whole tensors: synthetic, MNIST, Fashion-MNIST (IDX files) and MNIST-1D.

Every loader returns a :class:`Splits` on the CPU; training moves it to the device once and
draws batches as index slices of a seeded per-epoch permutation (no DataLoader).
"""
from __future__ import annotations

import gzip
import hashlib
import os
import random
import struct
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from skipexp.core.config import DataConfig
from skipexp.core.errors import SkipexpError
from skipexp.core.registry import DATASETS

# progress(done_bytes, total_bytes or None, description): the CLI draws it, the library never prints
Progress = Callable[[int, "int | None", str], None]


@dataclass
class Splits:
    x_train: torch.Tensor   # (N, input_dim) float32
    y_train: torch.Tensor   # (N,) int64
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    source: str = ""        # where the data came from, for meta.json
    x_val: torch.Tensor | None = None   # held out of the training split (data.val_size); None without one
    y_val: torch.Tensor | None = None

    @property
    def input_dim(self) -> int:
        return self.x_train.shape[1]

    def to(self, device: torch.device) -> Splits:
        names = ("x_train", "y_train", "x_test", "y_test") + (("x_val", "y_val") if self.y_val is not None else ())
        return replace(self, **{k: getattr(self, k).to(device) for k in names})


def load(cfg: DataConfig, progress: Progress | None = None) -> Splits:
    splits = DATASETS.get(cfg.dataset, "data.dataset")(cfg, progress)
    return _subset(_hold_out(splits, cfg), cfg)


def _hold_out(s: Splits, cfg: DataConfig) -> Splits:
    """The validation split: ``val_size`` examples of the training split, drawn from ``data.seed`` and never
    trained on (``train_size`` then subsets what is left). The test split is never touched."""
    if not cfg.val_size:
        return s
    n = len(s.y_train)
    if cfg.val_size >= n:
        raise SkipexpError(f"holds out {cfg.val_size} examples for validation but {cfg.dataset} has {n} in its "
                           f"training split, and training needs some", key="data.val_size")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed + 7_919))
    val, train = perm[:cfg.val_size].sort().values, perm[cfg.val_size:].sort().values
    return replace(s, x_train=s.x_train[train], y_train=s.y_train[train], x_val=s.x_train[val], y_val=s.y_train[val])


def _subset(s: Splits, cfg: DataConfig) -> Splits:
    """A seeded subset of each split, where train_size / test_size ask for one."""
    g = torch.Generator().manual_seed(cfg.seed)
    out = {}
    for split, size in (("train", cfg.train_size), ("test", cfg.test_size)):
        x, y = getattr(s, f"x_{split}"), getattr(s, f"y_{split}")
        if size is not None:
            if size > len(y):
                raise SkipexpError(f"asks for {size} examples but {cfg.dataset} has {len(y)} in its {split} split",
                                   key=f"data.{split}_size")
            idx = torch.randperm(len(y), generator=g)[:size].sort().values
            x, y = x[idx], y[idx]
        out[f"x_{split}"], out[f"y_{split}"] = x, y
    return replace(s, **out)


def train_sample(s: Splits, size: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The training examples a run's train loss and accuracy are evaluated on: all of them (``size`` None or
    at least the split), else a sample of ``size`` drawn from ``seed`` (the data's), the same for every run
    of that data and every evaluation."""
    n = len(s.y_train)
    if size is None or size >= n:
        return s.x_train, s.y_train
    g = torch.Generator().manual_seed(seed + 104_729)
    idx = torch.randperm(n, generator=g)[:size].sort().values.to(s.y_train.device)
    return s.x_train[idx], s.y_train[idx]


def batch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The permutation of epoch ``epoch``: a pure function of (seed, epoch), so resume needs no RNG state."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


# --- synthetic ------------------------------------------------------------------------------------

@DATASETS.implements("synthetic")
def synthetic(cfg: DataConfig, progress: Progress | None = None) -> Splits:
    """Gaussian clusters, four per class, in an 8-dimensional subspace of the input, plus noise.

    A linear model gets about half right; a net with one hidden layer nearly all. So when a deep plain
    net stays at chance, depth is to blame, not the data. Drawn on the CPU from ``data.seed`` alone,
    so it is the same on every machine and device.
    """
    g = torch.Generator().manual_seed(10_007 + cfg.seed)
    d, k, sub, per_class = cfg.input_dim, cfg.num_classes, min(8, cfg.input_dim), 4
    n = cfg.n_train + cfg.n_test
    centers = torch.randn(k * per_class, sub, generator=g) * 3.0
    cluster = torch.randint(0, k * per_class, (n,), generator=g)
    z = centers[cluster] + torch.randn(n, sub, generator=g)                  # (n, sub)
    basis = torch.linalg.qr(torch.randn(d, d, generator=g))[0][:sub]          # (sub, d), orthonormal rows
    x = z @ basis + 0.5 * torch.randn(n, d, generator=g)                      # (n, d)
    x = (x - x.mean(0)) / x.std(0)
    y = cluster % k
    t = cfg.n_train
    return Splits(x[:t], y[:t], x[t:], y[t:], k, source=f"synthetic(seed={cfg.seed})")


@DATASETS.implements("synthetic-images")
def synthetic_images(cfg: DataConfig, progress: Progress | None = None) -> Splits:
    """Small images for conv nets: each class has four smooth random patterns (C, S, S); an example is one of
    its class's patterns shifted by up to S/4 pixels in each direction (circularly), plus noise.

    Where the pattern sits varies, what it looks like does not: a task for translation-equivariant convs and
    a pooled head. Stored flat, row-major (N, C*S*S), like every dataset here: a conv net reads each row as
    its (C, S, S) image. Drawn on the CPU from ``data.seed`` alone.
    """
    g = torch.Generator().manual_seed(20_011 + cfg.seed)
    c, s, k, per_class = cfg.channels, cfg.image_size, cfg.num_classes, 4
    n = cfg.n_train + cfg.n_test
    raw = torch.randn(k * per_class, c, s, s, generator=g)
    blur = torch.ones(c, 1, 3, 3) / 9.0                       # smooth: neighbouring pixels correlate, as in photos
    patterns = torch.nn.functional.conv2d(raw, blur, padding=1, groups=c)
    patterns = patterns / patterns.flatten(1).std(1).view(-1, 1, 1, 1)
    cluster = torch.randint(0, k * per_class, (n,), generator=g)
    shift = torch.randint(-(s // 4), s // 4 + 1, (n, 2), generator=g)
    rows = (torch.arange(s).view(1, s) - shift[:, :1]) % s                          # (n, S)
    cols = (torch.arange(s).view(1, s) - shift[:, 1:]) % s                          # (n, S)
    x = patterns[cluster[:, None, None, None], torch.arange(c).view(1, c, 1, 1),
                 rows[:, None, :, None], cols[:, None, None, :]]                    # (n, C, S, S)
    x = x + 0.8 * torch.randn(n, c, s, s, generator=g)
    x = ((x - x.mean()) / x.std()).reshape(n, -1).contiguous()
    y = cluster % k
    t = cfg.n_train
    return Splits(x[:t], y[:t], x[t:], y[t:], k, source=f"synthetic-images(seed={cfg.seed})")


# --- MNIST and Fashion-MNIST: the same IDX format, different files ---------------------------------

@dataclass(frozen=True)
class IdxDataset:
    name: str
    mirrors: tuple[str, ...]
    files: dict[str, str] = field(default_factory=dict)     # file name -> published MD5 of the archive
    mean: float = 0.0
    std: float = 1.0
    system_dirs: tuple[str, ...] = ()
    counts: dict[str, int] = field(default_factory=lambda: {"train": 60_000, "test": 10_000})
    image_size: tuple[int, int] = (28, 28)

    def split_files(self, split: str) -> tuple[str, str]:
        prefix = "train" if split == "train" else "t10k"
        return f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz"


MNIST = IdxDataset(
    name="mnist",
    mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
    files={
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    mean=0.1307, std=0.3081,
    system_dirs=("/usr/share/datasets/mnist",),
)

FASHION_MNIST = replace(
    MNIST,
    name="fashion-mnist",
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    files={
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    mean=0.2860, std=0.3530,
    system_dirs=("/usr/share/datasets/fashion-mnist",),
)

def candidate_dirs(spec: IdxDataset, root: str | None) -> list[Path]:
    """Where the IDX files are looked for, in order."""
    dirs: list[Path] = []
    for base in (root, os.environ.get("SKIPEXP_DATA")):
        if base:
            dirs += [Path(base).expanduser(), Path(base).expanduser() / spec.name]
    dirs.append(cache_dir(spec.name))
    dirs += [Path(d) for d in spec.system_dirs]
    return dirs


def cache_dir(name: str) -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "skipexp" / name


def _find_file(d: Path, name: str) -> Path | None:
    for candidate in (d / name, d / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def find_idx_dir(spec: IdxDataset, root: str | None) -> Path | None:
    for d in candidate_dirs(spec, root):
        if all(_find_file(d, f) for f in spec.files):
            return d
    return None


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (gzipped or not) into an array; a SkipexpError names a bad file."""
    try:
        raw = gzip.open(path, "rb").read() if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise SkipexpError(f"cannot read: {e}; delete it to download it again", file=str(path)) from None
    if len(raw) < 4:
        raise SkipexpError("truncated: shorter than an IDX header", file=str(path))
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != 0x08 or ndim not in (1, 3):
        raise SkipexpError(f"not an IDX file of unsigned bytes (magic {raw[:4].hex()})", file=str(path))
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise SkipexpError("truncated header", file=str(path))
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    size = int(np.prod(shape))
    if len(raw) - header != size:
        raise SkipexpError(f"holds {len(raw) - header} bytes of data, its header promises {size}", file=str(path))
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _load_split(spec: IdxDataset, d: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    img_name, lbl_name = spec.split_files(split)
    img_path, lbl_path = _find_file(d, img_name), _find_file(d, lbl_name)
    images, labels = read_idx(img_path), read_idx(lbl_path)
    n, (rows, cols) = spec.counts[split], spec.image_size
    if images.ndim != 3 or images.shape[1:] != (rows, cols):
        raise SkipexpError(f"expected {rows}x{cols} images, found shape {images.shape}", file=str(img_path))
    if images.shape[0] != n:
        raise SkipexpError(f"expected {n} images, found {images.shape[0]}", file=str(img_path))
    if labels.ndim != 1 or labels.shape[0] != n:
        raise SkipexpError(f"expected {n} labels, found shape {labels.shape}", file=str(lbl_path))
    if labels.max() > 9:
        raise SkipexpError(f"labels must be 0-9, found {int(labels.max())}", file=str(lbl_path))
    x = torch.from_numpy(images.reshape(n, -1).astype(np.float32) / 255.0)
    x = (x - spec.mean) / spec.std
    return x, torch.from_numpy(labels.astype(np.int64))


def md5sum(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def mirrors(spec: IdxDataset) -> tuple[str, ...]:
    """The spec's mirrors, or those in $SKIPEXP_MIRRORS (space- or comma-separated base URLs) when set."""
    env = os.environ.get("SKIPEXP_MIRRORS", "").replace(",", " ").split()
    return tuple(m if m.endswith("/") else m + "/" for m in env) or spec.mirrors


def download(spec: IdxDataset, dest: Path, progress: Progress | None = None, timeout: float = 30.0) -> None:
    """Fetch every archive from the first mirror that serves it, check its MD5, write it atomically."""
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SkipexpError(f"cannot create the download folder: {e.strerror}", file=str(dest)) from None
    for name, md5 in spec.files.items():
        target = dest / name
        if target.exists() and md5sum(target) == md5:
            continue
        errors = []
        for mirror in mirrors(spec):
            url = mirror + name
            try:
                _fetch(url, target, md5, progress, timeout)
                break
            except (urllib.error.URLError, OSError, ValueError) as e:
                errors.append(f"{url}: {getattr(e, 'reason', e)}")
        else:
            raise SkipexpError(f"could not download {name} ({'; '.join(errors)})", file=str(dest))


def _fetch(url: str, target: Path, md5: str, progress: Progress | None, timeout: float) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        h = hashlib.md5()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            total = resp.headers.get("Content-Length")
            total = int(total) if total else None
            done = 0
            while chunk := resp.read(1 << 16):
                out.write(chunk)
                h.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total, target.name)
        if h.hexdigest() != md5:
            raise ValueError(f"MD5 mismatch: got {h.hexdigest()}, expected {md5}")
        os.replace(tmp, target)  # atomic: a reader never sees half a file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_idx(spec: IdxDataset, cfg: DataConfig, progress: Progress | None = None) -> Splits:
    d = find_idx_dir(spec, cfg.root)
    if d is None:
        dest = Path(cfg.root).expanduser() if cfg.root else cache_dir(spec.name)
        try:
            download(spec, dest, progress)
        except SkipexpError as e:
            places = ", ".join(str(p) for p in candidate_dirs(spec, cfg.root))
            raise SkipexpError(
                f"{spec.name} is not on this machine and the download failed ({e.message}); to fix it, put "
                f"{', '.join(spec.files)} in one of: {places} (or point data.root or $SKIPEXP_DATA at a folder "
                f"holding them)", key="data.dataset") from None
        d = dest
    x_train, y_train = _load_split(spec, d, "train")
    x_test, y_test = _load_split(spec, d, "test")
    return Splits(x_train, y_train, x_test, y_test, 10, source=str(d))


DATASETS.implements("mnist")(lambda cfg, progress=None: load_idx(MNIST, cfg, progress))
DATASETS.implements("fashion-mnist")(lambda cfg, progress=None: load_idx(FASHION_MNIST, cfg, progress))


# --- MNIST-1D -------------------------------------------------------------------------------------

@DATASETS.implements("mnist1d")
def mnist1d(cfg: DataConfig, progress: Progress | None = None) -> Splits:
    """MNIST-1D from the package's local generator (never its download), cached as a tensor file."""
    cached = cache_dir("mnist1d") / "mnist1d-default.pt"
    if cached.is_file():
        try:
            d = torch.load(cached, weights_only=True)
            return Splits(d["x"], d["y"], d["x_test"], d["y_test"], 10, source=f"mnist1d generator ({cached})")
        except Exception:  # a damaged cache is rebuilt, not trusted
            pass
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        raise SkipexpError("needs the mnist1d package: pip install 'skipexp[mnist1d]'", key="data.dataset") from None
    # the generator reseeds numpy's and python's global RNGs; keep ours as they were
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        raw = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    d = {"x": torch.tensor(raw["x"], dtype=torch.float32), "y": torch.tensor(raw["y"], dtype=torch.int64),
         "x_test": torch.tensor(raw["x_test"], dtype=torch.float32),
         "y_test": torch.tensor(raw["y_test"], dtype=torch.int64)}
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cached.parent, suffix=".part")
        os.close(fd)
        torch.save(d, tmp)
        os.replace(tmp, cached)
    except OSError:
        pass  # a cache we cannot write only costs time
    return Splits(d["x"], d["y"], d["x_test"], d["y_test"], 10, source="mnist1d generator")


def input_shape(cfg: DataConfig) -> tuple[int, int]:
    """(input features, classes) of a dataset, known without loading it."""
    if cfg.dataset == "synthetic":
        return cfg.input_dim, cfg.num_classes
    if cfg.dataset == "synthetic-images":
        c, h, w = cfg.image_shape()
        return c * h * w, cfg.num_classes
    return {"mnist": 784, "fashion-mnist": 784, "mnist1d": 40}[cfg.dataset], 10
