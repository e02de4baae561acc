"""The datasets torchvision reads, from small files each test writes in torchvision's own layouts:
MNIST, Fashion-MNIST and KMNIST (`<root>/<Class>/raw/*-ubyte`), CIFAR-10 (`cifar-10-batches-py`),
CIFAR-100 and CIFAR-20 (`cifar-100-python`), SVHN (`train_32x32.mat`, `test_32x32.mat`).

torchvision's CIFAR and SVHN classes check every file against the md5 of the official
release, which a file written by a test cannot have. The fixture `official_md5` works around
that without skipping torchvision's check or its parser: it puts the md5 of the files the test
wrote into torchvision's own tables (`CIFAR10.train_list`, `.test_list`, `.meta`,
`SVHN.split_list`, patched for the test only), so `check_integrity` still hashes every file
and torchvision's own code unpickles and reshapes them. One test runs without the fixture, to
show what a user with a damaged file sees. MNIST's class checks only that the files exist.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from trainables.core.config import TrainConfig
from trainables.core.data import DataError, load_dataset
from trainables.core.vision import CIFAR100_COARSE, CIFAR100_FINE, COARSE_OF_FINE
from tuner.cli import main

# the fine -> coarse table as the CIFAR-100 files' own coarse_labels give it (the widely used
# `sparse2coarse` table): a check of the table mixtune builds from the superclass names
SPARSE2COARSE = [4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
                 6, 11, 5, 10, 7, 6, 13, 15, 3, 15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
                 5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
                 10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
                 16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13]


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def official_md5(monkeypatch):
    """accept(name, folder): make the md5s of the files written in `folder` torchvision's expected ones."""
    import torchvision.datasets as tvd

    def accept(cls_name: str, folder: Path) -> None:
        cls = getattr(tvd, cls_name)
        if cls_name == "SVHN":
            table = {split: [url, name, md5(folder / name)] if (folder / name).is_file() else [url, name, h]
                     for split, (url, name, h) in cls.split_list.items()}
            monkeypatch.setattr(cls, "split_list", table)
            return
        monkeypatch.setattr(cls, "train_list", [[n, md5(folder / n)] for n, _ in cls.train_list])
        monkeypatch.setattr(cls, "test_list", [[n, md5(folder / n)] for n, _ in cls.test_list])
        monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5(folder / cls.meta["filename"])})

    return accept


def cfg(dataset, data_dir, **kw):
    return TrainConfig(dataset=dataset, data_dir=str(data_dir), **kw)


# ----------------------------------------------------------------------------- writers
def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_root(root: Path, cls: str, n_train: int = 60, n_test: int = 30, seed: int = 0) -> dict:
    """<root>/<cls>/raw with the four plain idx files, as torchvision's download leaves them."""
    raw = root / cls / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(idx_bytes(x, 0x803))
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(y, 0x801))
        arrays[prefix] = (x, y)
    return arrays


def write_pickle(path: Path, obj) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def write_cifar10(root: Path, n: int = 20, seed: int = 0) -> dict:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    out = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)  # rows: R plane, G plane, B plane
        labels = [int(v) for v in rng.integers(0, 10, n)]  # a list, as in the real files
        write_pickle(folder / name, {"batch_label": name, "labels": labels, "data": data, "filenames": []})
        out[name] = (data, labels)
    write_pickle(folder / "batches.meta", {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog",
                                                          "frog", "horse", "ship", "truck"], "num_vis": 3072})
    return out


def write_cifar100(root: Path, n_train: int = 200, n_test: int = 60, seed: int = 0) -> dict:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    out = {}
    for name, n in (("train", n_train), ("test", n_test)):
        fine = rng.integers(0, 100, n)
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        coarse = [SPARSE2COARSE[f] for f in fine]
        write_pickle(folder / name, {"filenames": [], "batch_label": name, "fine_labels": [int(f) for f in fine],
                                     "coarse_labels": coarse, "data": data})
        out[name] = (data, fine, np.array(coarse))
    write_pickle(folder / "meta", {"fine_label_names": list(CIFAR100_FINE), "coarse_label_names": list(CIFAR100_COARSE)})
    return out


def write_svhn(root: Path, n_train: int = 40, n_test: int = 20, seed: int = 0) -> dict:
    from scipy.io import savemat

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = {}
    for name, n in (("train_32x32.mat", n_train), ("test_32x32.mat", n_test)):
        X = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)  # (H, W, C, N), as the real files
        y = (np.arange(n) % 10 + 1).astype(np.uint8)[:, None]  # labels 1..10; 10 is the digit 0
        savemat(root / name, {"X": X, "y": y})
        out[name] = (X, y[:, 0])
    return out


# ----------------------------------------------------------------------------- MNIST family
@pytest.mark.parametrize("dataset, cls", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST"), ("kmnist", "KMNIST")])
def test_idx_datasets_from_torchvision_root(tmp_path, dataset, cls):
    arrays = write_idx_root(tmp_path, cls)
    data = load_dataset(cfg(dataset, tmp_path))
    assert data.x_train.shape == (60, 1, 28, 28) and data.x_test.shape == (30, 1, 28, 28)
    assert data.y_train.tolist() == [i % 10 for i in range(60)] and data.num_classes == 10
    # pixels where they were: normalisation is one affine map for the single channel
    x, _ = arrays["t10k"]
    a = data.x_test[:, 0].double().flatten().numpy()
    assert np.corrcoef(a, x.astype(np.float64).flatten())[0, 1] > 0.9999


def test_idx_wrong_dataset_names_the_right_one(tmp_path):
    write_idx_root(tmp_path, "KMNIST")
    with pytest.raises(DataError, match=r"MNIST not found in .*, which holds KMNIST/raw: use dataset=kmnist"):
        load_dataset(cfg("mnist", tmp_path))


def test_idx_torchvision_root_with_only_gz_or_test_files(tmp_path):
    # torchvision's class wants all four plain files; a raw folder holding less is read file by file
    import gzip

    arrays = write_idx_root(tmp_path, "FashionMNIST")
    raw = tmp_path / "FashionMNIST" / "raw"
    for f in raw.glob("train-*"):
        f.unlink()
    for f in raw.glob("t10k-*"):
        (raw / (f.name + ".gz")).write_bytes(gzip.compress(f.read_bytes()))
        f.unlink()
    data = load_dataset(cfg("fashion_mnist", tmp_path, train_fraction=0.5))
    assert len(data.x_train) == 20 and len(data.x_test) == 10  # round(0.5 * 3) of each class
    assert sorted(data.y_train.tolist() + data.y_test.tolist()) == sorted(arrays["t10k"][1].tolist())


def test_idx_torchvision_root_bad_file_is_named(tmp_path):
    write_idx_root(tmp_path, "MNIST")
    bad = tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    bad.write_bytes(bad.read_bytes()[:-5])
    with pytest.raises(DataError, match=r"MNIST/raw/train-labels-idx1-ubyte: truncated"):
        load_dataset(cfg("mnist", tmp_path))


# ----------------------------------------------------------------------------- CIFAR
def test_cifar10_torchvision_layout(tmp_path, official_md5):
    written = write_cifar10(tmp_path)
    official_md5("CIFAR10", tmp_path / "cifar-10-batches-py")
    data = load_dataset(cfg("cifar10", tmp_path))
    assert data.x_train.shape == (100, 3, 32, 32) and data.x_test.shape == (20, 3, 32, 32)
    assert data.num_classes == 10 and data.in_shape == (3, 32, 32) and data.y_train.dtype == torch.int64
    first, labels = written["data_batch_1"]
    assert data.y_train[:20].tolist() == labels and data.y_test.tolist() == written["test_batch"][1]
    # channel-major rows: the red plane of image 0 is its first 1024 values (up to normalisation)
    a = data.x_train[0, 0].double().flatten().numpy()
    assert np.corrcoef(a, first[0, :1024].astype(np.float64))[0, 1] > 0.9999
    # data_dir pointing at the extracted folder itself gives the same data
    same = load_dataset(cfg("cifar10", tmp_path / "cifar-10-batches-py"))
    assert torch.equal(same.x_train, data.x_train) and same.fingerprint == data.fingerprint


def test_cifar100_and_cifar20_share_the_files(tmp_path, official_md5):
    written = write_cifar100(tmp_path)
    official_md5("CIFAR100", tmp_path / "cifar-100-python")
    fine = load_dataset(cfg("cifar100", tmp_path))
    coarse = load_dataset(cfg("cifar20", tmp_path))
    assert fine.num_classes == 100 and coarse.num_classes == 20
    assert fine.y_train.tolist() == written["train"][1].tolist()
    # the coarse labels are the files' own coarse_labels, derived from torchvision's fine labels
    assert coarse.y_train.tolist() == written["train"][2].tolist()
    assert coarse.y_test.tolist() == written["test"][2].tolist()
    assert torch.equal(fine.x_train, coarse.x_train) and fine.fingerprint != coarse.fingerprint


def test_cifar20_table_is_cifar100s_superclasses():
    assert COARSE_OF_FINE.tolist() == SPARSE2COARSE
    assert np.bincount(COARSE_OF_FINE).tolist() == [5] * 20
    assert CIFAR100_FINE[:4] == ("apple", "aquarium_fish", "baby", "bear") and len(CIFAR100_FINE) == 100
    assert CIFAR100_COARSE[COARSE_OF_FINE[CIFAR100_FINE.index("whale")]] == "aquatic_mammals"


def test_cifar_missing_file_says_where(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset(cfg("cifar10", tmp_path))
    msg = str(e.value)
    assert f"expected {tmp_path / 'cifar-10-batches-py' / 'data_batch_1'}" in msg
    assert "cifar-10-python.tar.gz" in msg and f"extract it into {tmp_path}" in msg and "never downloads" in msg
    with pytest.raises(DataError, match=r"CIFAR-20 not found.*cifar-100-python.*never downloads"):
        load_dataset(cfg("cifar20", tmp_path))
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "batches.meta").unlink()
    with pytest.raises(DataError, match=r"expected .*cifar-10-batches-py/batches.meta"):
        load_dataset(cfg("cifar10", tmp_path))


def test_cifar_checksum_mismatch_without_the_workaround(tmp_path):
    # what a user with a damaged or foreign file sees: torchvision's md5 check, named
    write_cifar10(tmp_path)
    with pytest.raises(DataError, match=r"data_batch_1: its md5 is not the official CIFAR-10 file's"):
        load_dataset(cfg("cifar10", tmp_path))


def test_cifar_file_torchvision_cannot_parse(tmp_path, official_md5):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").write_bytes(b"not a pickle")
    official_md5("CIFAR10", tmp_path / "cifar-10-batches-py")
    with pytest.raises(DataError, match=r"cifar-10-batches-py: torchvision.datasets.CIFAR10 cannot read it"):
        load_dataset(cfg("cifar10", tmp_path))


def test_cifar20_refuses_a_meta_that_is_not_cifar100s(tmp_path, official_md5):
    write_cifar100(tmp_path)
    write_pickle(tmp_path / "cifar-100-python" / "meta", {"fine_label_names": [f"c{i}" for i in range(100)]})
    official_md5("CIFAR100", tmp_path / "cifar-100-python")
    assert load_dataset(cfg("cifar100", tmp_path)).num_classes == 100  # names do not matter there
    with pytest.raises(DataError, match=r"meta: fine_label_names are not CIFAR-100's 100 classes"):
        load_dataset(cfg("cifar20", tmp_path))


# ----------------------------------------------------------------------------- SVHN
def test_svhn_torchvision_layout(tmp_path, official_md5):
    written = write_svhn(tmp_path)
    official_md5("SVHN", tmp_path)
    data = load_dataset(cfg("svhn", tmp_path))
    assert data.x_train.shape == (40, 3, 32, 32) and data.x_test.shape == (20, 3, 32, 32)
    X, y = written["train_32x32.mat"]
    assert data.y_train.tolist() == [v % 10 for v in y.tolist()]  # label 10 is the digit 0
    a = data.x_train[3, 1].double().flatten().numpy()  # image 3, green channel, row-major
    assert np.corrcoef(a, X[:, :, 1, 3].astype(np.float64).flatten())[0, 1] > 0.9999


def test_svhn_missing_and_damaged(tmp_path, official_md5):
    with pytest.raises(DataError, match=r"SVHN not found: expected .*train_32x32.mat.*never downloads"):
        load_dataset(cfg("svhn", tmp_path))
    write_svhn(tmp_path)
    with pytest.raises(DataError, match=r"train_32x32.mat: its md5 is not the official SVHN file's"):
        load_dataset(cfg("svhn", tmp_path))
    (tmp_path / "test_32x32.mat").write_bytes(b"not a mat file")
    official_md5("SVHN", tmp_path)
    with pytest.raises(DataError, match=r"test_32x32.mat: torchvision.datasets.SVHN cannot read it"):
        load_dataset(cfg("svhn", tmp_path))


# ----------------------------------------------------------------------------- mixtune train on each
def write_layout(dataset: str, root: Path, official_md5) -> None:
    if dataset in ("mnist", "fashion_mnist", "kmnist"):
        write_idx_root(root, {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "kmnist": "KMNIST"}[dataset],
                       n_train=200, n_test=40)
    elif dataset == "cifar10":
        write_cifar10(root, n=40)
        official_md5("CIFAR10", root / "cifar-10-batches-py")
    elif dataset in ("cifar100", "cifar20"):
        write_cifar100(root, n_train=400)
        official_md5("CIFAR100", root / "cifar-100-python")
    else:
        write_svhn(root, n_train=200)
        official_md5("SVHN", root)


TRAIN_SIZES = {"mnist": 200, "fashion_mnist": 200, "kmnist": 200, "cifar10": 200, "cifar100": 400, "cifar20": 400,
               "svhn": 200}


@pytest.mark.parametrize("dataset", list(TRAIN_SIZES))
def test_mixtune_train_on_each_layout(tmp_path, capsys, official_md5, dataset):
    root = tmp_path / "data"
    write_layout(dataset, root, official_md5)
    out = tmp_path / "run"
    rc = main(["train", "--dataset", dataset, "--data-dir", str(root), "--method", "mixup", "--labels", "complementary",
               "--val-fraction", "0", "--epochs", "2", "--model", "mlp", "--hidden", "32", "--num-threads", "1",
               "--quiet", "--output", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert f"done: mixup on {dataset}" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["train_size"] == TRAIN_SIZES[dataset] and summary["final"]["epoch"] == 2
    assert 0.0 <= summary["final"]["test_acc"] <= 1.0
