import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from trainables.core.config import TrainConfig
from trainables.core.data import LOADERS, DataError, Dataset, load_dataset, stratified_split

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


def affine(t: torch.Tensor, raw: np.ndarray) -> bool:
    """Whether t = a * raw + b with a > 0: per-channel normalisation keeps pixels where they were."""
    return np.corrcoef(t.double().numpy(), raw.astype(np.float64))[0, 1] > 0.9999


def cfg(dataset="digits", data_dir=None, **kw):
    return TrainConfig(dataset=dataset, data_dir=None if data_dir is None else str(data_dir), **kw)


@pytest.fixture(scope="module")
def digits():
    return load_dataset(cfg())


# ----------------------------------------------------------------------------- digits
def test_digits_shapes_and_normalisation(digits):
    assert isinstance(digits, Dataset) and digits.name == "digits"
    assert digits.x_train.shape[1:] == (1, 8, 8) and digits.in_shape == (1, 8, 8)
    assert len(digits.x_train) + len(digits.x_test) == 1797
    assert digits.x_train.dtype == torch.float32 and digits.y_train.dtype == torch.int64
    assert digits.num_classes == 10 and set(digits.y_test.tolist()) == set(range(10))
    mean = digits.x_train.mean(dim=(0, 2, 3))
    std = digits.x_train.std(dim=(0, 2, 3), correction=0)
    assert torch.allclose(mean, torch.zeros(1), atol=1e-5) and torch.allclose(std, torch.ones(1), atol=1e-4)
    assert abs(digits.x_test.mean().item()) < 0.1  # same statistics, not its own


def test_digits_split_is_stratified_and_fixed(digits):
    counts_tr = torch.bincount(digits.y_train, minlength=10)
    counts_te = torch.bincount(digits.y_test, minlength=10)
    share = counts_tr.double() / (counts_tr + counts_te).double()
    assert torch.all((share - 0.8).abs() < 0.01)  # round(0.8 * n_c) per class
    again = load_dataset(cfg(seed=5))  # the split ignores cfg.seed
    assert torch.equal(again.x_train, digits.x_train) and torch.equal(again.y_test, digits.y_test)
    assert again.fingerprint == digits.fingerprint
    other = load_dataset(cfg(train_fraction=0.5))
    assert len(other.x_train) in range(890, 910) and other.fingerprint != digits.fingerprint
    assert len(digits.fingerprint) == 64 and int(digits.fingerprint, 16) >= 0


def test_stratified_split_disjoint_and_complete():
    y = np.repeat(np.arange(3), [10, 5, 4])
    tr, te = stratified_split(y, 0.6)
    assert sorted(np.concatenate([tr, te]).tolist()) == list(range(len(y)))
    assert np.bincount(y[tr]).tolist() == [6, 3, 2]  # round(6.0), round(3.0), round(2.4)
    tr2, _ = stratified_split(y, 0.6)
    assert np.array_equal(tr, tr2)


def test_digits_read_from_the_file_are_scikit_learns(monkeypatch):
    """The digits read from scikit-learn's file (no sklearn import) are `load_digits`' to the bit,
    and so is the fallback through `load_digits` where the file is not found."""
    import importlib.util

    from sklearn.datasets import load_digits

    from trainables.core import data

    bunch = load_digits()
    for table in (data.digits_table(), _without_file(monkeypatch, importlib.util, data)):
        assert table.dtype == np.float64 and table.shape == (1797, 65)
        assert np.array_equal(table[:, :-1].reshape(-1, 8, 8), bunch.images)
        assert np.array_equal(table[:, -1].astype(np.int64), bunch.target)


def _without_file(monkeypatch, util, data):
    monkeypatch.setattr(util, "find_spec", lambda name: None)
    return data.digits_table()


def test_dataset_to_returns_copy(digits):
    moved = digits.to("cpu")
    assert moved is not digits and moved.fingerprint == digits.fingerprint
    assert torch.equal(moved.x_test, digits.x_test)


def test_loaders_table_covers_every_dataset():
    from trainables.core.config import DATASETS

    assert set(LOADERS) == set(DATASETS)


# ----------------------------------------------------------------------------- MNIST idx
@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason=f"real MNIST test set not found at {SHARED_MNIST}")
def test_real_mnist_t10k_is_split():
    data = load_dataset(cfg("mnist", SHARED_MNIST, train_fraction=0.8))
    assert data.x_train.shape == (8000, 1, 28, 28) and data.x_test.shape == (2000, 1, 28, 28)
    assert data.num_classes == 10 and set(data.y_train.tolist()) == set(range(10))
    assert abs(data.x_train.mean().item()) < 1e-4


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(folder: Path, prefix: str, n: int, gz: bool, seed: int = 0, *, images=None, labels=None) -> None:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    y = np.arange(n, dtype=np.uint8) % 10
    files = {
        f"{prefix}-images-idx3-ubyte": images if images is not None else idx_bytes(x, 0x803),
        f"{prefix}-labels-idx1-ubyte": labels if labels is not None else idx_bytes(y, 0x801),
    }
    for name, raw in files.items():
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_train_and_test_files_load(tmp_path, gz):
    write_idx(tmp_path, "train", 30, gz)
    write_idx(tmp_path, "t10k", 20, gz, seed=1)
    data = load_dataset(cfg("mnist", tmp_path))
    assert data.x_train.shape == (30, 1, 28, 28) and data.x_test.shape == (20, 1, 28, 28)
    assert data.y_train.tolist() == [i % 10 for i in range(30)]
    assert data.num_classes == 10


def test_idx_t10k_only_is_split_stratified(tmp_path):
    write_idx(tmp_path, "t10k", 50, gz=False)
    data = load_dataset(cfg("mnist", tmp_path, train_fraction=0.6))
    assert len(data.x_train) == 30 and len(data.x_test) == 20
    assert torch.bincount(data.y_train, minlength=10).tolist() == [3] * 10


def test_idx_torchvision_raw_folder(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    write_idx(raw, "t10k", 20, gz=True)
    assert len(load_dataset(cfg("fashion_mnist", tmp_path, train_fraction=0.5)).x_train) == 10
    with pytest.raises(DataError, match=r"MNIST not found in .*, which holds FashionMNIST/raw: use dataset=fashion_mnist"):
        load_dataset(cfg("mnist", tmp_path))


def test_idx_trailing_bytes(tmp_path):
    x = np.zeros((20, 28, 28), dtype=np.uint8)
    write_idx(tmp_path, "t10k", 20, gz=False, images=idx_bytes(x, 0x803) + b"\0" * 7)
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: 7 unexpected bytes after the data"):
        load_dataset(cfg("kmnist", tmp_path))


@pytest.mark.parametrize("gz", [True, False])
def test_idx_wrong_magic(tmp_path, gz):
    labels = np.arange(20, dtype=np.uint8) % 10
    write_idx(tmp_path, "t10k", 20, gz, labels=idx_bytes(labels, 0x803))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.*wrong magic number"):
        load_dataset(cfg("mnist", tmp_path))


@pytest.mark.parametrize("gz", [True, False])
def test_idx_truncated(tmp_path, gz):
    x = np.zeros((20, 28, 28), dtype=np.uint8)
    write_idx(tmp_path, "t10k", 20, gz, images=idx_bytes(x, 0x803)[:-100])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.*truncated"):
        load_dataset(cfg("mnist", tmp_path))


def test_idx_truncated_header(tmp_path):
    write_idx(tmp_path, "t10k", 20, False, images=(0x803).to_bytes(4, "big") + b"\0\0")
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: truncated"):
        load_dataset(cfg("mnist", tmp_path))


def test_idx_corrupt_gzip(tmp_path):
    write_idx(tmp_path, "t10k", 20, gz=True)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz: cannot read"):
        load_dataset(cfg("mnist", tmp_path))


def test_idx_count_mismatch(tmp_path):
    write_idx(tmp_path, "t10k", 20, gz=False, labels=idx_bytes(np.zeros(19, dtype=np.uint8), 0x801))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: 19 labels but t10k-images-idx3-ubyte has 20"):
        load_dataset(cfg("mnist", tmp_path))


def test_idx_label_out_of_range(tmp_path):
    write_idx(tmp_path, "t10k", 20, gz=False, labels=idx_bytes(np.full(20, 12, dtype=np.uint8), 0x801))
    with pytest.raises(DataError, match=r"label 12 out of range"):
        load_dataset(cfg("mnist", tmp_path))


def test_idx_missing_partner_and_missing_dir(tmp_path):
    write_idx(tmp_path, "t10k", 20, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\[\.gz\] is missing"):
        load_dataset(cfg("mnist", tmp_path))
    with pytest.raises(DataError, match=r"MNIST not found: expected .*nowhere.*never downloads"):
        load_dataset(cfg("mnist", tmp_path / "nowhere"))


# ----------------------------------------------------------------------------- npz
def write_npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def ys(n_train=12, n_test=6):
    return np.arange(n_train) % 3, np.arange(n_test) % 3


@pytest.mark.parametrize(
    "shape, in_shape",
    [
        ((7,), (1, 1, 7)),
        ((6, 5), (1, 6, 5)),
        ((6, 5, 3), (3, 6, 5)),
        ((6, 5, 1), (1, 6, 5)),
        ((3, 6, 5), (3, 6, 5)),
        ((1, 6, 5), (1, 6, 5)),
    ],
)
def test_npz_accepted_shapes(tmp_path, shape, in_shape):
    rng = np.random.default_rng(0)
    ytr, yte = ys()
    xtr = rng.integers(0, 256, (12, *shape), dtype=np.uint8)
    xte = rng.integers(0, 256, (6, *shape), dtype=np.uint8)
    data = load_dataset(cfg("npz", write_npz(tmp_path / "d.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)))
    assert data.in_shape == in_shape and data.num_classes == 3
    assert data.x_train.shape == (12, *in_shape) and data.x_test.shape == (6, *in_shape)
    if shape == (6, 5, 3):  # channels-last: channel 2 is moved, not reshuffled
        assert affine(data.x_train[:, 2].flatten(), xtr[..., 2].flatten())


def test_npz_float_kept_and_labels(tmp_path):
    xtr = np.random.default_rng(0).normal(size=(12, 4)).astype(np.float32)
    ytr, yte = ys()
    yte = yte.copy()
    yte[0] = 4  # num_classes counts the test labels too
    data = load_dataset(cfg("npz", write_npz(tmp_path / "d.npz", x_train=xtr, y_train=ytr, x_test=xtr[:6], y_test=yte)))
    assert data.num_classes == 5 and data.x_train.dtype == torch.float32
    assert torch.allclose(data.x_train.mean(), torch.zeros(()), atol=1e-5)


def _good():
    ytr, yte = ys()
    return dict(x_train=np.zeros((12, 4, 4), np.uint8), y_train=ytr, x_test=np.zeros((6, 4, 4), np.uint8), y_test=yte)


@pytest.mark.parametrize(
    "change, needle",
    [
        (dict(x_test=None), r"missing array\(s\) x_test"),
        (dict(y_train=np.arange(10) % 3), r"d.npz: y_train has 10 labels but x_train has 12 images"),
        (dict(y_train=np.zeros((12, 1), np.int64)), r"y_train has shape \(12, 1\)"),
        (dict(y_test=np.zeros(6, np.float32)), r"y_test has dtype float32"),
        (dict(y_train=np.full(12, -1)), r"y_train has a negative label"),
        (
            dict(x_train=np.zeros((12, 4, 4, 5), np.uint8), x_test=np.zeros((6, 4, 4, 5), np.uint8)),
            r"x_train has shape \(12, 4, 4, 5\)",
        ),
        (dict(x_test=np.zeros((6, 5, 4), np.uint8)), r"x_train images \(1, 4, 4\) and x_test images \(1, 5, 4\)"),
        (dict(x_test=np.zeros(6, np.uint8)), r"x_test has shape \(6,\)"),
        (dict(x_test=np.zeros((6, 4, 4), np.float32)), r"x_train is uint8 but x_test is float32"),
    ],
)
def test_npz_malformed(tmp_path, change, needle):
    arrays = {**_good(), **change}
    arrays = {k: v for k, v in arrays.items() if v is not None}
    with pytest.raises(DataError, match=needle):
        load_dataset(cfg("npz", write_npz(tmp_path / "d.npz", **arrays)))


def test_npz_missing_file_and_pickled_objects(tmp_path):
    with pytest.raises(DataError, match=r"no such .npz file"):
        load_dataset(cfg("npz", tmp_path / "absent.npz"))
    arrays = {**_good(), "y_test": np.array([object()] * 6)}
    with pytest.raises(DataError, match=r"cannot read as .npz"):
        load_dataset(cfg("npz", write_npz(tmp_path / "d.npz", **arrays)))


# ----------------------------------------------------------------------------- tabular features
def tabular_npz(tmp_path, x_dtype=np.float64):
    rng = np.random.default_rng(0)
    scales = np.array([1e-3, 1.0, 1e3, 1e5])  # features on very different scales
    xtr = (rng.normal(size=(40, 4)) * scales + 7 * scales).astype(x_dtype)
    xte = (rng.normal(size=(10, 4)) * scales + 7 * scales).astype(x_dtype)
    xtr[:, 1] = 2.5  # a constant feature
    ytr, yte = np.arange(40) % 2, np.arange(10) % 2
    return write_npz(tmp_path / "t.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte), xtr, xte


def test_tabular_float_features_are_standardised_one_by_one(tmp_path):
    path, xtr, xte = tabular_npz(tmp_path)
    data = load_dataset(cfg("npz", path))
    assert data.in_shape == (1, 1, 4)
    x = data.x_train[:, 0, 0].double()  # (40, 4)
    assert torch.allclose(x.mean(0), torch.zeros(4, dtype=torch.float64), atol=1e-4)
    assert torch.allclose(x.std(0, correction=0)[[0, 2, 3]], torch.ones(3, dtype=torch.float64), atol=1e-4)
    assert torch.all(x[:, 1] == 0)  # constant in training: centred, not divided by ~0
    # the test split uses the training split's statistics, not its own
    mean, std = xtr.mean(0), xtr.std(0)
    std[1] = 1.0
    expect = torch.from_numpy((xte - mean) / std)
    assert torch.allclose(data.x_test[:, 0, 0].double(), expect, rtol=1e-4, atol=1e-4)
    assert torch.isfinite(data.x_test).all()


def test_tabular_standardisation_off_keeps_one_shared_mean_and_std(tmp_path):
    path, xtr, _ = tabular_npz(tmp_path)
    on = load_dataset(cfg("npz", path))
    off = load_dataset(cfg("npz", path, standardize_features=False))
    x = off.x_train[:, 0, 0].double()
    assert abs(x.mean().item()) < 1e-4 and abs(x.std(correction=0).item() - 1) < 1e-4  # one mean/std for all
    assert x[:, 0].std().item() < 1e-6  # the small feature is flattened to nothing: the bug this field fixes
    assert on.fingerprint != off.fingerprint  # other inputs, other cached clusterings


def test_pixels_are_never_standardised_per_feature(tmp_path):
    # uint8 (N, D) rows are flattened images, (N, H, W) floats are images: per channel either way
    for x_dtype, shape in ((np.uint8, (12, 5)), (np.float32, (12, 3, 5))):
        rng = np.random.default_rng(1)
        x = rng.integers(0, 256, size=shape).astype(x_dtype)
        path = write_npz(tmp_path / "p.npz", x_train=x, y_train=np.arange(12) % 3)
        on, off = load_dataset(cfg("npz", path)), load_dataset(cfg("npz", path, standardize_features=False))
        assert torch.equal(on.x_train, off.x_train) and on.fingerprint == off.fingerprint


# ----------------------------------------------------------------------------- README
def test_readme_dataset_table_names_every_dataset():
    from trainables.core.config import DATASETS

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("<!-- datasets:start -->", 1)[1].split("<!-- datasets:end -->", 1)[0]
    rows = {line.split("|")[1].strip().strip("`") for line in section.splitlines() if line.startswith("| `")}
    rows.discard("--dataset")  # the header row
    assert rows == set(DATASETS) == set(LOADERS)
