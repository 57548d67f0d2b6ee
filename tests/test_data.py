"""Data: IDX parsing and structural checks, the lookup order, the download (loopback HTTP), the real datasets."""
from __future__ import annotations

import gzip
import http.server
import socket
import struct
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from idx_files import COUNTS, fake_split, idx_bytes, write_dataset, write_idx

from skipexp.core import config, data
from skipexp.core.errors import SkipexpError

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def small_spec(**changes) -> data.IdxDataset:
    fields = {"name": "tiny-idx", "mirrors": ("http://127.0.0.1:9/",), "system_dirs": (), "counts": COUNTS}
    return replace(data.MNIST, **{**fields, **changes})


@pytest.fixture
def isolated_env(tmp_path, monkeypatch):
    """No $SKIPEXP_DATA, caches under tmp_path: nothing outside the test is read or written."""
    monkeypatch.delenv("SKIPEXP_DATA", raising=False)
    monkeypatch.delenv("SKIPEXP_MIRRORS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


# --- read_idx ------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".gz", ""])
def test_read_idx_images_and_labels(tmp_path, suffix):
    images, labels = fake_split(7, seed=1)
    got = data.read_idx(write_idx(tmp_path / f"img{suffix}", images))
    assert got.shape == (7, 28, 28) and np.array_equal(got, images)
    got = data.read_idx(write_idx(tmp_path / f"lbl{suffix}", labels))
    assert got.shape == (7,) and np.array_equal(got, labels)


@pytest.mark.parametrize("suffix", [".gz", ""])
@pytest.mark.parametrize("content,words", [
    (b"\x00\x00", ["truncated"]),                                               # shorter than the magic
    (b"\x00\x00\x08\x03\x00\x00", ["truncated header"]),                       # dims cut off
    (struct.pack(">HBB", 0x1f8b, 8, 3) + b"\x00" * 12, ["not an IDX", "1f8b"]),  # bad magic
    (struct.pack(">HBB", 0, 0x0D, 1) + struct.pack(">I", 2) + b"\x00" * 8, ["not an IDX"]),  # floats
    (idx_bytes(np.zeros((3, 28, 28)))[:-5], ["bytes of data", "promises 2352"]),  # truncated data
    (idx_bytes(np.zeros(4)) + b"\x00", ["promises 4"]),                          # trailing bytes
])
def test_read_idx_rejects_bad_files_naming_them(tmp_path, suffix, content, words):
    path = write_idx(tmp_path / f"bad{suffix}", content)
    with pytest.raises(SkipexpError) as info:
        data.read_idx(path)
    assert info.value.file == str(path)
    for w in words:
        assert w in info.value.message


def test_read_idx_broken_gzip(tmp_path):
    good = gzip.compress(idx_bytes(np.zeros((3, 28, 28))))
    for name, content in (("cut.gz", good[: len(good) // 2]), ("garbage.gz", b"not gzip at all")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(SkipexpError, match="cannot read") as info:
            data.read_idx(tmp_path / name)
        assert info.value.file == str(tmp_path / name)


# --- structural checks through load_idx ---------------------------------------------------------

@pytest.mark.parametrize("gz", [True, False])
def test_load_idx_small_valid_set(isolated_env, gz):
    root = isolated_env / "root"
    write_dataset(root, gz=gz)
    spec = small_spec()
    s = data.load_idx(spec, config.DataConfig(dataset="mnist", root=str(root)))
    assert s.x_train.shape == (20, 784) and s.x_test.shape == (10, 784)
    assert s.y_train.dtype == torch.int64 and s.x_train.dtype == torch.float32
    images, labels = fake_split(20, seed=len("train"))
    assert torch.equal(s.y_train, torch.from_numpy(labels.astype(np.int64)))
    expected = (torch.from_numpy(images.reshape(20, -1).astype(np.float32)) / 255 - spec.mean) / spec.std
    assert torch.allclose(s.x_train, expected)
    assert s.source == str(root)


@pytest.mark.parametrize("bad,file,words", [
    ({"train_images": fake_split(19, 0)[0]}, "train-images", ["expected 20 images", "19"]),
    ({"t10k_labels": fake_split(11, 0)[1]}, "t10k-labels", ["expected 10 labels"]),
    ({"train_images": fake_split(20, 0, size=20)[0]}, "train-images", ["28x28", "20, 20"]),
    ({"train_images": fake_split(20, 0)[1]}, "train-images", ["28x28"]),           # labels where images go
    ({"train_labels": np.full(20, 10, dtype=np.uint8)}, "train-labels", ["0-9", "10"]),
])
def test_structural_checks_name_the_file(isolated_env, bad, file, words):
    root = isolated_env / "root"
    write_dataset(root, **bad)
    with pytest.raises(SkipexpError) as info:
        data.load_idx(small_spec(), config.DataConfig(dataset="mnist", root=str(root)))
    assert Path(info.value.file).name.startswith(file)
    for w in words:
        assert w in info.value.message, info.value.message


def test_real_specs_expect_the_standard_sizes():
    for spec in (data.MNIST, data.FASHION_MNIST):
        assert spec.counts == {"train": 60_000, "test": 10_000} and spec.image_size == (28, 28)
        assert len(spec.files) == 4 and all(len(m) == 32 for m in spec.files.values())


# --- lookup order --------------------------------------------------------------------------------

def test_lookup_order(isolated_env, monkeypatch):
    tmp = isolated_env
    system = tmp / "system"
    spec = small_spec(system_dirs=(str(system),))
    root, env = tmp / "root", tmp / "env"
    monkeypatch.setenv("SKIPEXP_DATA", str(env))
    cache = tmp / "xdg" / "skipexp" / "tiny-idx"
    assert data.candidate_dirs(spec, str(root)) == [root, root / "tiny-idx", env, env / "tiny-idx", cache, system]
    # each place wins over the ones after it; a place missing a file is passed over
    for d in (system, cache, env / "tiny-idx", env, root / "tiny-idx"):
        write_dataset(d)
        assert data.find_idx_dir(spec, str(root)) == d
    write_dataset(root, gz=False)   # uncompressed files count too
    assert data.find_idx_dir(spec, str(root)) == root
    (root / "t10k-labels-idx1-ubyte").unlink()
    assert data.find_idx_dir(spec, str(root)) == root / "tiny-idx"


def test_cache_dir_follows_xdg_then_home(isolated_env, monkeypatch):
    assert data.cache_dir("mnist") == isolated_env / "xdg" / "skipexp" / "mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert data.cache_dir("mnist") == isolated_env / "home" / ".cache" / "skipexp" / "mnist"


def test_no_files_and_no_mirror_says_where_to_put_them(isolated_env):
    spec = small_spec()
    with pytest.raises(SkipexpError) as info:
        data.load_idx(spec, config.DataConfig(dataset="mnist"))
    msg = info.value.message
    assert info.value.key == "data.dataset" and "\n" not in msg
    assert "train-images-idx3-ubyte.gz" in msg and str(data.cache_dir("tiny-idx")) in msg
    assert "SKIPEXP_DATA" in msg and "127.0.0.1:9" in msg


# --- download from a loopback mirror -------------------------------------------------------------

class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def mirror(tmp_path):
    """An HTTP server on 127.0.0.1 serving small valid IDX .gz files; yields (base URL, their MD5s)."""
    served = tmp_path / "served"
    md5s = write_dataset(served)
    handler = lambda *a, **k: QuietHandler(*a, directory=str(served), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", md5s
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_download_good_checksum(isolated_env, mirror):
    url, md5s = mirror
    # the first mirror is down: the next one serves
    spec = small_spec(mirrors=(f"http://127.0.0.1:{closed_port()}/", url), files=md5s)
    dest = isolated_env / "dl"
    seen: dict[str, tuple[int, int | None]] = {}
    data.download(spec, dest, progress=lambda done, total, name: seen.__setitem__(name, (done, total)))
    assert sorted(p.name for p in dest.iterdir()) == sorted(md5s)  # no .part left behind
    for name, md5 in md5s.items():
        assert data.md5sum(dest / name) == md5
        assert seen[name][0] == seen[name][1] == (dest / name).stat().st_size
    # and load_idx uses the download when nothing is found locally
    s = data.load_idx(spec, config.DataConfig(dataset="mnist"))
    assert s.x_train.shape == (20, 784) and s.source == str(data.cache_dir("tiny-idx"))
    assert sorted(p.name for p in data.cache_dir("tiny-idx").iterdir()) == sorted(md5s)


def test_download_bad_checksum_leaves_nothing(isolated_env, mirror):
    url, md5s = mirror
    wrong = {name: "0" * 32 for name in md5s}
    dest = isolated_env / "dl"
    with pytest.raises(SkipexpError, match="MD5 mismatch"):
        data.download(small_spec(mirrors=(url,), files=wrong), dest)
    assert list(dest.iterdir()) == []
    with pytest.raises(SkipexpError) as info:
        data.load_idx(small_spec(mirrors=(url,), files=wrong), config.DataConfig(dataset="mnist"))
    assert "MD5 mismatch" in info.value.message and "put" in info.value.message
    assert list(data.cache_dir("tiny-idx").iterdir()) == []


def test_mirrors_env_var_replaces_the_specs(isolated_env, monkeypatch, mirror):
    url, md5s = mirror
    monkeypatch.setenv("SKIPEXP_MIRRORS", f"http://127.0.0.1:{closed_port()} {url}")
    spec = small_spec(files=md5s)
    assert data.mirrors(spec)[1] == url
    data.download(spec, isolated_env / "dl")
    assert sorted(p.name for p in (isolated_env / "dl").iterdir()) == sorted(md5s)


# --- the real datasets ---------------------------------------------------------------------------

@pytest.mark.skipif(not (FASHION_DIR / "t10k-labels-idx1-ubyte.gz").is_file(),
                    reason=f"Fashion-MNIST is not installed in {FASHION_DIR} (apt-get install dataset-fashion-mnist)")
def test_fashion_mnist_from_the_debian_copy(isolated_env):
    s = data.load(config.DataConfig(dataset="fashion-mnist", test_size=1000))
    assert s.source == str(FASHION_DIR)
    assert s.x_train.shape == (60_000, 784) and s.x_test.shape == (1000, 784)
    assert set(s.y_train.unique().tolist()) == set(range(10))
    assert (s.y_train.bincount() == 6000).all()           # Fashion-MNIST is balanced
    assert abs(s.x_train.mean().item()) < 0.01 and abs(s.x_train.std().item() - 1) < 0.01  # normalised


@pytest.fixture(scope="session")
def mnist1d_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("mnist1d-cache")


def test_mnist1d_from_the_generator_then_the_cache(mnist1d_cache, monkeypatch):
    pytest.importorskip("mnist1d")
    monkeypatch.setenv("XDG_CACHE_HOME", str(mnist1d_cache))
    np.random.seed(7)
    state = np.random.get_state()[1].copy()
    first = data.load(config.DataConfig(dataset="mnist1d"))
    assert np.array_equal(state, np.random.get_state()[1])  # the generator leaves the caller's RNG alone
    assert first.x_train.shape == (4000, 40) and first.x_test.shape == (1000, 40)
    assert first.y_train.dtype == torch.int64 and set(first.y_test.unique().tolist()) == set(range(10))
    cached = mnist1d_cache / "skipexp" / "mnist1d" / "mnist1d-default.pt"
    assert cached.is_file()
    again = data.load(config.DataConfig(dataset="mnist1d"))
    assert str(cached) in again.source
    assert torch.equal(first.x_train, again.x_train) and torch.equal(first.y_test, again.y_test)


def test_synthetic_is_deterministic():
    cfg = config.DataConfig(n_train=512, n_test=128)
    a, b = data.load(cfg), data.load(cfg)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    torch.manual_seed(123)  # the global RNG plays no part
    c = data.load(cfg)
    assert torch.equal(a.x_train, c.x_train)
    other = data.load(replace(cfg, seed=1))
    assert not torch.equal(a.x_train, other.x_train)
    assert a.x_train.shape == (512, 32) and a.num_classes == 10
    assert set(a.y_train.unique().tolist()) == set(range(10))


def fit(model: torch.nn.Module, s: data.Splits, steps: int = 300) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(s.x_train), s.y_train).backward()
        opt.step()
    with torch.no_grad():
        return (model(s.x_test).argmax(1) == s.y_test).float().mean().item()


def test_synthetic_needs_a_hidden_layer():
    """A linear model gets about half; one hidden layer nearly all: so depth, not data, sinks a plain deep net."""
    s = data.load(config.DataConfig(n_train=2048, n_test=1024))
    torch.manual_seed(0)
    linear = fit(torch.nn.Linear(32, 10), s)
    torch.manual_seed(0)
    mlp = fit(torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10)), s)
    assert linear < 0.75 and mlp > 0.9 and mlp - linear > 0.2, (linear, mlp)


def test_subsets_are_seeded_and_checked():
    cfg = config.DataConfig(n_train=100, n_test=50, train_size=30, test_size=10)
    a, b = data.load(cfg), data.load(cfg)
    assert a.x_train.shape == (30, 32) and a.x_test.shape == (10, 32) and torch.equal(a.x_train, b.x_train)
    with pytest.raises(SkipexpError) as info:
        data.load(replace(cfg, train_size=101))
    assert info.value.key == "data.train_size"


def test_batch_order_is_a_pure_function():
    a = data.batch_order(100, seed=1, epoch=2)
    assert torch.equal(a, data.batch_order(100, seed=1, epoch=2))
    assert torch.equal(a.sort().values, torch.arange(100))
    assert not torch.equal(a, data.batch_order(100, seed=1, epoch=3))
    assert not torch.equal(a, data.batch_order(100, seed=2, epoch=2))


def test_validation_split_is_held_out_of_training_and_never_the_test_set():
    cfg = config.from_dict({"data": {"n_train": 600, "n_test": 100, "val_size": 150, "train_size": 300}}).data
    whole = data.load(replace(cfg, val_size=None, train_size=None))
    s = data.load(cfg)
    assert len(s.y_val) == 150 and len(s.y_train) == 300
    rows = {tuple(r.tolist()) for r in whole.x_train}
    val, train = {tuple(r.tolist()) for r in s.x_val}, {tuple(r.tolist()) for r in s.x_train}
    assert val <= rows and train <= rows and not val & train   # from the training split, disjoint
    assert torch.equal(s.x_test, whole.x_test)                  # the test set untouched
    again = data.load(cfg)
    assert torch.equal(again.x_val, s.x_val) and torch.equal(again.x_train, s.x_train)
    assert data.load(replace(cfg, val_size=None)).y_val is None
    with pytest.raises(SkipexpError, match="600") as e:
        data.load(replace(cfg, val_size=600))
    assert e.value.key == "data.val_size"
