"""IDX files (MNIST's format) for tests: small valid datasets, and single files to spoil on purpose."""
from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np

COUNTS = {"train": 20, "test": 10}


def idx_bytes(array: np.ndarray) -> bytes:
    return struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + \
        array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray | bytes) -> Path:
    raw = array if isinstance(array, bytes) else idx_bytes(array)
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def fake_split(n: int, seed: int, size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)


def write_dataset(d: Path, gz: bool = True, **bad: np.ndarray) -> dict[str, str]:
    """A small but valid set of the four IDX files in ``d``; ``bad`` replaces some by name. Returns MD5s."""
    d.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = fake_split(COUNTS[split], seed=len(prefix))
        arrays[f"{prefix}-images-idx3-ubyte.gz"] = images
        arrays[f"{prefix}-labels-idx1-ubyte.gz"] = labels
    md5s = {}
    for name, array in arrays.items():
        array = bad.get(name.split("-idx")[0].replace("-", "_"), array)
        path = write_idx(d / (name if gz else name.removesuffix(".gz")), array)
        md5s[name] = hashlib.md5(path.read_bytes()).hexdigest()
    return md5s
