"""`dataset=folder`: your own images, from real image files each test writes.

Layouts: class subfolders (torchvision's ImageFolder), a given train/test split, and images
with a `labels.csv` of complementary labels (`labels=given`); resizing; the decoded-tensor
cache keyed by the folder's content; and every bad folder as one line naming the file, exit
code 2 and nothing written.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from trainables.core import folder as folder_mod
from trainables.core.config import TrainConfig
from trainables.core.data import DataError, load_dataset
from trainables.core.folder import cache_file, content_key, decode_images
from tuner.cli import main


def cfg(root, **kw):
    kw.setdefault("cache_dir", str(Path(root).parent / "cache"))
    return TrainConfig(dataset="folder", data_dir=str(root), **kw)


def pattern(c: int, i: int, size=(8, 8), channels=3) -> np.ndarray:
    """An image of class c: a class-dependent brightness plus noise, so a model can tell classes apart."""
    rng = np.random.default_rng(1000 * c + i)
    h, w = size
    base = 40 + 70 * c
    img = np.clip(base + rng.normal(0, 20, size=(h, w, channels)), 0, 255).astype(np.uint8)
    return img[..., 0] if channels == 1 else img


def save(path: Path, array: np.ndarray, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format=fmt)
    return path


def image_folder(root: Path, classes=("cat", "dog", "owl"), n=10, size=(8, 8), channels=3) -> dict:
    """root/<class>/<i>.png; returns {path: (array, class index)}."""
    out = {}
    for c, name in enumerate(classes):
        for i in range(n):
            a = pattern(c, i, size, channels)
            out[save(root / name / f"{i:03d}.png", a)] = (a, c)
    return out


def csv_folder(root: Path, n=30, with_test=True, rows=None) -> tuple[np.ndarray, dict]:
    """root/img/<i>.png with labels.csv (complementary labels only) and classes.txt; test/<class>/ optional."""
    names = ["cat", "dog", "owl"]
    y = np.arange(n) % 3
    lines = ["file,complementary_labels"]
    images = {}
    for i in range(n):
        p = save(root / "img" / f"{i:03d}.png", pattern(int(y[i]), i))
        images[p] = int(y[i])
        other = (int(y[i]) + 1) % 3  # a class the image is not
        # odd rows: one complementary label; even rows: two annotators who named the same class
        lines.append(f"img/{i:03d}.png,{other}" if i % 2 else f"img/{i:03d}.png,{other} {other}")
    (root / "labels.csv").write_text("\n".join(rows if rows is not None else lines) + "\n")
    (root / "classes.txt").write_text("\n".join(names) + "\n")
    if with_test:
        for c, name in enumerate(names):
            for i in range(4):
                save(root / "test" / name / f"t{i}.png", pattern(c, 100 + i))
    return y, images


# ----------------------------------------------------------------------------- layouts
def test_image_folder_one_split(tmp_path):
    root = tmp_path / "pets"
    written = image_folder(root)
    data = load_dataset(cfg(root, train_fraction=0.7))
    assert data.num_classes == 3 and data.in_shape == (3, 8, 8)
    assert len(data.x_train) == 21 and len(data.x_test) == 9  # round(0.7 * 10) of each class
    assert torch.bincount(data.y_train).tolist() == [7, 7, 7]
    # decoded pixels are the written ones, in (C, H, W), in ImageFolder's order (class, then name)
    x = decode_images(sorted(written), 0)
    assert x.shape == (30, 3, 8, 8) and x.dtype == np.uint8
    for k, p in enumerate(sorted(written)):
        assert np.array_equal(x[k], written[p][0].transpose(2, 0, 1))


def test_image_folder_given_split_and_unknown_test_class(tmp_path):
    root = tmp_path / "split"
    image_folder(root / "train", n=6)
    image_folder(root / "test", classes=("dog", "owl"), n=2)  # a test set may lack a class
    data = load_dataset(cfg(root))
    assert len(data.x_train) == 18 and len(data.x_test) == 4
    assert data.y_test.tolist() == [1, 1, 2, 2]  # dog, owl as indexed by the training classes
    save(root / "test" / "yak" / "0.png", pattern(0, 0))
    with pytest.raises(DataError, match=r"test/yak: class 'yak' is not a training class \(cat, dog, owl\)"):
        load_dataset(cfg(root))


def test_grayscale_stays_one_channel_mixed_becomes_rgb(tmp_path):
    root = tmp_path / "gray"
    image_folder(root, channels=1, n=4)
    assert load_dataset(cfg(root)).in_shape == (1, 8, 8)
    (root / "dog" / "pal.png").parent.mkdir(exist_ok=True)
    Image.fromarray(pattern(1, 99)).convert("P").save(root / "dog" / "pal.png")  # a palette image is colour
    data = load_dataset(cfg(root))
    assert data.in_shape == (3, 8, 8)
    x = decode_images([root / "cat" / "000.png", root / "dog" / "pal.png"], 0)  # a gray image among colour ones
    assert x.shape == (2, 3, 8, 8) and np.array_equal(x[0, 0], x[0, 2])  # R = G = B
    assert np.array_equal(x[0, 0], pattern(0, 0, channels=1))


def test_other_formats_and_resizing_like_torchvision(tmp_path):
    from torchvision.transforms import functional as TF

    root = tmp_path / "mixed"
    a = save(root / "a" / "0.jpg", pattern(0, 0, size=(20, 30)))
    b = save(root / "a" / "1.bmp", pattern(0, 1, size=(12, 12)))
    save(root / "b" / "0.tif", pattern(1, 0, size=(16, 16)))
    save(root / "b" / "1.webp", pattern(1, 1, size=(9, 40)))
    with pytest.raises(DataError, match=r"a/1.bmp: 12x12 pixels, but .*a/0.jpg is 30x20; set image_size"):
        load_dataset(cfg(root))
    data = load_dataset(cfg(root, image_size=16, train_fraction=0.5))
    assert data.in_shape == (3, 16, 16) and len(data.x_train) == 2
    # what torchvision's Resize((16, 16)) does to the PIL image
    x = decode_images([a, b], 16)
    with Image.open(a) as im:
        expect = np.asarray(TF.resize(im.convert("RGB"), [16, 16]))
    assert np.array_equal(x[0], expect.transpose(2, 0, 1))


def test_csv_of_complementary_labels(tmp_path):
    root = tmp_path / "cll"
    y, _ = csv_folder(root)
    data = load_dataset(cfg(root, labels="given"))
    assert data.y_train is None and data.num_classes == 3 and data.in_shape == (3, 8, 8)
    assert data.cl_train.shape == (30, 3) and torch.allclose(data.cl_train.sum(1), torch.ones(30))
    # no row puts weight on its image's true class, which the CSV never names
    assert torch.all(data.cl_train[torch.arange(30), torch.from_numpy(y)] == 0)
    assert torch.all((data.cl_train[::2] > 0).sum(1) == 1)  # even rows named one class (twice)
    assert len(data.x_test) == 12 and sorted(data.y_test.tolist()) == [0] * 4 + [1] * 4 + [2] * 4
    bare = tmp_path / "bare"
    csv_folder(bare, with_test=False)
    assert load_dataset(cfg(bare, labels="given")).x_test is None


# ----------------------------------------------------------------------------- cache
def test_decoded_once_then_read_from_the_cache(tmp_path, monkeypatch):
    root = tmp_path / "pets"
    written = image_folder(root, n=4)
    first = load_dataset(cfg(root))
    key = content_key(root, 0)
    path = cache_file(cfg(root), key)
    assert path.is_file() and not list(path.parent.glob(".*.tmp"))
    blob = torch.load(path, weights_only=True)
    assert blob["x_train"].dtype == torch.uint8 and blob["classes"] == ["cat", "dog", "owl"]

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(folder_mod, "decode_folder", no_decoding)
    again = load_dataset(cfg(root))
    assert torch.equal(again.x_train, first.x_train) and again.fingerprint == first.fingerprint
    # the key is the folder's content: new bytes in one image, a new key, decoded again
    p = next(iter(written))
    save(p, 255 - written[p][0])
    assert content_key(root, 0) != key
    with pytest.raises(AssertionError, match="decoded again"):
        load_dataset(cfg(root))
    monkeypatch.undo()
    changed = load_dataset(cfg(root))
    assert changed.fingerprint != first.fingerprint and len(list(path.parent.glob("*.pt"))) == 2
    assert content_key(root, 16) != content_key(root, 0)  # the size to resize to is part of the key


def test_corrupt_cache_file_is_decoded_again(tmp_path):
    root = tmp_path / "pets"
    image_folder(root, n=4)
    first = load_dataset(cfg(root))
    path = cache_file(cfg(root), content_key(root, 0))
    path.write_bytes(b"garbage")
    again = load_dataset(cfg(root))
    assert torch.equal(again.x_train, first.x_train)
    assert torch.load(path, weights_only=True)["x_train"].shape == (12, 3, 8, 8)


# ----------------------------------------------------------------------------- mixtune train
def test_mixtune_train_on_an_image_folder(tmp_path, capsys):
    root = tmp_path / "pets"
    image_folder(root, n=20)
    out = tmp_path / "run"
    rc = main(["train", "--dataset", "folder", "--data-dir", str(root), "--labels", "ordinary", "--val-fraction", "0",
               "--epochs", "10", "--batch-size", "16", "--model", "mlp", "--hidden", "32", "--num-threads", "1", "--quiet",
               "--cache-dir", str(tmp_path / "cache"), "--output", str(out)])
    assert rc == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["train_size"] == 48 and summary["final"]["test_acc"] >= 0.9  # brightness tells the classes apart


def test_mixtune_train_on_csv_complementary_labels(tmp_path, capsys):
    root = tmp_path / "cll"
    csv_folder(root, n=60)
    out = tmp_path / "run"
    rc = main(["train", "--dataset", "folder", "--data-dir", str(root), "--labels", "given", "--method", "icm",
               "--k", "3", "--val-fraction", "0.2", "--epochs", "3", "--model", "mlp", "--hidden", "32",
               "--num-threads", "1", "--quiet", "--cache-dir", str(tmp_path / "cache"), "--output", str(out)])
    assert rc == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["train_size"] == 48 and summary["val_size"] == 12 and "val_scel" in summary["final"]
    assert "test_acc" in summary["final"]  # the test/ folder has true labels


# ----------------------------------------------------------------------------- bad folders
def bad_csv(root: Path, rows: list[str]) -> None:
    csv_folder(root, n=6, with_test=False, rows=["file,complementary_labels", *rows])


def garbage_png(root: Path) -> None:
    image_folder(root, n=2)
    (root / "dog" / "001.png").write_bytes(b"\x89PNG but not really")


def truncated_png(root: Path) -> None:
    image_folder(root, n=2, size=(64, 64))
    p = root / "owl" / "000.png"
    p.write_bytes(p.read_bytes()[:200])


BAD = [
    ("empty", lambda r: r.mkdir(parents=True), [], r"empty: no class subfolders, so no images"),
    ("loose", lambda r: save(r / "a.png", pattern(0, 0)), [], r"loose: no class subfolders"),
    ("hollow", lambda r: (r / "cat").mkdir(parents=True) or (r / "dog" / "x.txt").parent.mkdir()
     or (r / "dog" / "x.txt").write_text("x"), [], r"hollow: no images in class folder\(s\) cat, dog \(image files end in"),
    ("single", lambda r: image_folder(r, classes=("cat",), n=3), [], r"single: a single class \(cat\)"),
    ("garbage", garbage_png, [], r"garbage/dog/001.png: cannot read as an image"),
    ("truncated", truncated_png, [], r"truncated/owl/000.png: cannot read as an image"),
    ("missing", lambda r: bad_csv(r, ["img/000.png,1", "img/nope.png,2"]), ["--labels", "given"],
     r"labels.csv line 3: no such image .*img/nope.png"),
    ("range", lambda r: bad_csv(r, ["img/000.png,1", "img/001.png,0 3"]), ["--labels", "given"],
     r"labels.csv line 3: complementary label 3 out of range 0..2 \(classes.txt names 3 classes\)"),
    ("notint", lambda r: bad_csv(r, ["img/000.png,dog"]), ["--labels", "given"],
     r"labels.csv line 2: complementary label 'dog' is not a class index 0..2"),
    ("allclasses", lambda r: bad_csv(r, ["img/000.png,0 1 2"]), ["--labels", "given"],
     r"labels.csv line 2: img/000.png names all 3 classes as complementary"),
    ("twice", lambda r: bad_csv(r, ["img/000.png,1", "img/000.png,2"]), ["--labels", "given"],
     r"labels.csv line 3: img/000.png is listed again \(first on line 2\)"),
    ("outside", lambda r: bad_csv(r, ["../x.png,1"]), ["--labels", "given"], r"labels.csv line 2: ../x.png is outside"),
    ("header", lambda r: csv_folder(r, n=3, rows=["path,cl", "img/000.png,1"]), ["--labels", "given"],
     r"labels.csv: the header must name the columns file,complementary_labels \(found path,cl\)"),
    ("noclasses", lambda r: csv_folder(r, n=3) and (r / "classes.txt").unlink(), ["--labels", "given"],
     r"noclasses/labels.csv needs .*noclasses/classes.txt: one class name per line"),
    ("nocsv", lambda r: image_folder(r, n=2), ["--labels", "given"], r"labels=given needs .*nocsv/labels.csv"),
    ("notgiven", lambda r: csv_folder(r, n=3), ["--labels", "complementary"],
     r"notgiven/labels.csv gives complementary labels and no true ones: use --labels given"),
    ("absent", lambda r: None, [], r"absent: no such folder"),
]


@pytest.mark.parametrize("name, make, extra, needle", BAD, ids=[b[0] for b in BAD])
def test_bad_folder_is_one_line_exit_2_nothing_written(tmp_path, capsys, name, make, extra, needle):
    root = tmp_path / "data" / name
    make(root)
    out, cache = tmp_path / "run", tmp_path / "cache"
    rc = main(["train", "--dataset", "folder", "--data-dir", str(root), *extra, "--epochs", "1",
               "--cache-dir", str(cache), "--output", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("mixtune: error:") and "\n" not in err, err
    assert __import__("re").search(needle, err), err
    assert not out.exists() and not cache.exists()


def test_cache_inside_the_image_folder_is_refused(tmp_path, capsys):
    # its .pt files would change the folder's content key on every run, and read as a class folder
    root = tmp_path / "pets"
    image_folder(root, n=2)
    rc = main(["train", "--dataset", "folder", "--data-dir", str(root), "--labels", "ordinary", "--epochs", "1",
               "--cache-dir", str(root / ".cache"), "--output", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and f"the decode cache {root / '.cache' / 'folders'} lies inside" in err, err
    assert not (root / ".cache").exists() and not (tmp_path / "run").exists()


def test_image_size_is_for_folders_only():
    from trainables.core.errors import ConfigError

    with pytest.raises(ConfigError, match="image_size=32 resizes dataset=folder images, not dataset=digits"):
        TrainConfig(image_size=32)
    with pytest.raises(ConfigError, match="image_size=-1 must be >= 0"):
        TrainConfig(dataset="folder", data_dir="x", image_size=-1)
