"""Bad input: each kind ends as one line naming the problem, exit code 2, and nothing written.

Every case runs the real CLI entry point in-process (`tuner.cli.main`) from an empty working
folder, with the results folder, the MLflow store and the clustering cache all under
tmp_path; afterwards none of them may exist and the working folder must still be empty.
No case may get as far as starting Ray.
"""

from __future__ import annotations

import gzip
import os
import socket
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

os.environ["RAY_AUTH_MODE"] = "disabled"

from tuner import cli  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def idx_bytes(magic: int, dims: tuple[int, ...], data: bytes) -> bytes:
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims) + data


def mnist_dir(root: Path, *, images: bytes | None = None, labels: bytes | None = None) -> Path:
    """A t10k-only MNIST folder of 40 images; `images`/`labels` replace one file's bytes."""
    root.mkdir(parents=True, exist_ok=True)
    n = 40
    good_images = idx_bytes(0x803, (n, 28, 28), bytes(n * 28 * 28))
    good_labels = idx_bytes(0x801, (n,), bytes(i % 10 for i in range(n)))
    (root / "t10k-images-idx3-ubyte").write_bytes(images if images is not None else good_images)
    (root / "t10k-labels-idx1-ubyte").write_bytes(labels if labels is not None else good_labels)
    return root


def npz_file(path: Path, **override) -> Path:
    arrays = dict(x_train=np.zeros((20, 8, 8), np.uint8), y_train=np.arange(20) % 2,
                  x_test=np.zeros((10, 8, 8), np.uint8), y_test=np.arange(10) % 2)
    arrays.update(override)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def space_file(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def make_case(name: str, tmp: Path) -> tuple[list[str], str]:
    """(argv after `mixtune`, a substring the one-line error must contain) for one kind."""
    d = tmp / "inputs"
    d.mkdir(exist_ok=True)
    if name == "value_out_of_range":
        return ["search", "--lr", "-1"], "lr=-1.0 must be a finite number > 0"
    if name == "alpha_zero":
        return ["search", "--alpha", "0"], "alpha=0.0 must be a finite number > 0"
    if name == "unknown_config_key":
        (d / "c.yaml").write_text("epochs: 3\nlearning_rate: 0.1\n")
        return ["search", "--config", str(d / "c.yaml")], "unknown key(s) learning_rate"
    if name == "malformed_config_yaml":
        (d / "c.yaml").write_text("epochs: [3, 4\nlr: 0.1\n")
        return ["search", "--config", str(d / "c.yaml")], "malformed YAML at line"
    if name == "wrong_type_in_config":
        (d / "c.yaml").write_text("epochs: ten\n")
        return ["search", "--config", str(d / "c.yaml")], "epochs"
    if name == "config_not_a_mapping":
        (d / "c.yaml").write_text("- 1\n- 2\n")
        return ["search", "--config", str(d / "c.yaml")], "expected a mapping"
    if name == "missing_dataset":
        return ["search", "--dataset", "mnist", "--data-dir", str(d / "nowhere")], "MNIST not found"
    if name == "truncated_idx":
        good = idx_bytes(0x803, (40, 28, 28), bytes(40 * 28 * 28))
        root = mnist_dir(d / "mnist", images=good[:-100])
        return ["search", "--dataset", "mnist", "--data-dir", str(root)], "truncated"
    if name == "truncated_gzip_idx":
        root = d / "mnistgz"
        mnist_dir(root)
        raw = (root / "t10k-images-idx3-ubyte").read_bytes()
        (root / "t10k-images-idx3-ubyte").unlink()
        packed = gzip.compress(raw)
        (root / "t10k-images-idx3-ubyte.gz").write_bytes(packed[: len(packed) // 2])
        return ["search", "--dataset", "mnist", "--data-dir", str(root)], "cannot read"
    if name == "wrong_magic":
        root = mnist_dir(d / "mnist", labels=idx_bytes(0x803, (40,), bytes(40)))
        return ["search", "--dataset", "mnist", "--data-dir", str(root)], "wrong magic number"
    if name == "count_mismatch":
        root = mnist_dir(d / "mnist", labels=idx_bytes(0x801, (39,), bytes(39)))
        return ["search", "--dataset", "mnist", "--data-dir", str(root)], "39 labels but"
    if name == "npz_wrong_shape":
        f = npz_file(d / "d.npz", x_train=np.zeros((20, 2, 2, 8, 8), np.uint8))
        return ["search", "--dataset", "npz", "--data-dir", str(f)], "x_train has shape (20, 2, 2, 8, 8)"
    if name == "npz_label_mismatch":
        f = npz_file(d / "d.npz", y_train=np.arange(7) % 2)
        return ["search", "--dataset", "npz", "--data-dir", str(f)], "y_train has 7 labels but x_train has 20"
    if name == "npz_missing_array":
        np.savez(d / "d.npz", x_train=np.zeros((4, 8, 8), np.uint8))
        return ["search", "--dataset", "npz", "--data-dir", str(d / "d.npz")], "missing array(s)"
    if name == "space_empty_range":
        f = space_file(d / "s.yaml", "params:\n  alpha: {low: 1.0, high: 1.0}\n")
        return ["search", "--space", f], "empty range [1.0, 1.0]"
    if name == "space_malformed_yaml":
        f = space_file(d / "s.yaml", "params:\n  alpha: {low: 1.0, high: 2.0\n")
        return ["search", "--space", f], "s.yaml"
    if name == "space_unknown_param":
        f = space_file(d / "s.yaml", "params:\n  learning_rate: {low: 0.001, high: 0.1}\n")
        return ["search", "--space", f], "learning_rate"
    if name == "space_unknown_preset":
        return ["search", "--space", "icmm"], "icmm"
    if name == "k_larger_than_train_set":
        f = space_file(d / "s.yaml", "params:\n  alpha: {low: 0.2, high: 2.0}\n")
        return ["search", "--space", f, "--method", "icm", "--k", "5000"], \
            "k=5000 is larger than the training set"
    if name == "searched_k_larger_than_train_set":
        f = space_file(d / "s.yaml", "params:\n  k: {low: 2, high: 100000}\nfixed:\n  method: icm\n")
        return ["search", "--space", f], "more than the"
    if name == "num_cl_too_large":
        return ["search", "--cl-type", "multiple", "--num-cl", "12"], "num_cl=12 must be <= 9"
    if name == "cuda_without_gpus":
        return ["search", "--device", "cuda"], "device=cuda needs --gpus-per-trial > 0"
    if name == "unreachable_tracking_uri":
        return ["search", "--tracking-uri", f"http://127.0.0.1:{free_port()}"], "is unreachable"
    if name == "tracking_uri_with_password_unreachable":
        return ["search", "--tracking-uri", f"http://alice:s3cret@127.0.0.1:{free_port()}"], \
            "is unreachable ([Errno 111] Connection refused)"
    if name == "tracking_sqlite_missing_folder":
        return ["search", "--tracking-uri", f"sqlite:///{d}/no/such/dir/mlflow.db"], "does not exist"
    if name == "tracking_bad_scheme":
        return ["search", "--tracking-uri", "ftp://example.org/mlflow"], "unsupported scheme 'ftp'"
    if name == "unreachable_ray_address":
        return ["search", "--address", f"127.0.0.1:{free_port()}"], "is unreachable"
    if name == "malformed_ray_address":
        return ["search", "--address", "not an address"], "is not auto, host:port"
    if name == "num_cpus_with_ray_address":  # the harness adds --num-cpus 1
        return ["search", "--address", "auto"], "--num-cpus sizes a Ray runtime of the search's own, but it joins"
    if name == "storage_path_not_writable":
        (d / "afile").write_text("x")
        return ["search", "--storage-path", str(d / "afile" / "ray")], "storage path"
    if name == "results_dir_not_writable":
        (d / "afile").write_text("x")
        return ["search", "--results-dir", str(d / "afile" / "res")], "is not writable"
    if name == "name_escapes_results":
        return ["search", "--name", "../../etc"], "search name '../../etc'"
    if name == "name_absolute":
        return ["search", "--name", "/tmp/evil"], "search name '/tmp/evil'"
    if name == "num_samples_zero":
        return ["search", "--num-samples", "0"], "num_samples=0 must be >= 1"
    if name == "unknown_metric":
        return ["search", "--metric", "accuracy"], "--metric 'accuracy' is not a metric a search can select on"
    if name == "val_fraction_too_large":
        return ["search", "--val-fraction", "0.6"], "val_fraction=0.6 must be in [0.0, 0.5]"
    if name == "val_fraction_negative":
        return ["search", "--val-fraction", "-0.1"], "val_fraction=-0.1 must be in [0.0, 0.5]"
    if name == "val_split_too_small":
        return ["search", "--val-fraction", "0.01"], "val_fraction=0.01 leaves 14 validation rows of 1438"
    if name == "metric_needs_true_val_labels":
        return ["search", "--metric", "val_acc"], "--metric val_acc cannot be reported by this search's trials " \
            "(it needs labels=ordinary, not labels=complementary)"
    if name == "metric_needs_cl":
        return ["search", "--labels", "ordinary", "--metric", "val_scel"], "it needs labels=complementary or given"
    if name == "metric_without_val_split":
        return ["search", "--val-fraction", "0", "--metric", "val_scel"], "there is no validation split"
    if name == "default_metric_without_val_split":
        return ["search", "--val-fraction", "0"], "val_fraction=0 leaves no validation metric to select on"
    if name == "metric_without_test_labels":
        f = npz_file(d / "d.npz", cl_train=np.arange(20) % 2, y_train=None, y_test=None)
        return ["search", "--dataset", "npz", "--data-dir", str(f), "--labels", "given", "--metric", "test_acc",
                "--val-fraction", "0.2"], "the data has no test labels"
    if name == "mode_against_metric":
        return ["search", "--mode", "max"], "--mode max contradicts val_scel_ts, for which lower is better"
    if name == "metric_not_selectable":
        return ["search", "--metric", "epoch_time"], "--metric 'epoch_time' is not a metric a search can select on"
    if name == "space_searches_data":
        f = space_file(d / "s.yaml", "params:\n  val_fraction: {low: 0.1, high: 0.3}\n")
        return ["search", "--space", f], "val_fraction define the data every trial shares"
    if name == "given_labels_missing":
        return ["search", "--dataset", "npz", "--data-dir", str(npz_file(d / "d.npz")), "--labels", "given",
                "--val-fraction", "0.2"], "labels=given, but d.npz carries no complementary labels (cl_train)"
    if name == "true_labels_missing":
        f = npz_file(d / "d.npz", cl_train=np.arange(20) % 2, y_train=None)
        return ["search", "--dataset", "npz", "--data-dir", str(f), "--val-fraction", "0.2"], \
            "labels=complementary needs true training labels (y_train), which d.npz lacks; use --labels given"
    if name == "given_cl_out_of_range":
        f = npz_file(d / "d.npz", cl_train=np.full(20, 2), y_train=None)
        return ["search", "--dataset", "npz", "--data-dir", str(f), "--labels", "given"], \
            "cl_train row 0 has complementary label 2, but there are 2 classes"
    if name == "given_mask_all_ones":
        mask = np.zeros((20, 2), bool)
        mask[:, 0] = True
        mask[3] = True
        f = npz_file(d / "d.npz", cl_train=mask, y_train=None)
        return ["search", "--dataset", "npz", "--data-dir", str(f), "--labels", "given"], \
            "cl_train row 3 marks all 2 classes as complementary"
    if name == "given_row_without_cl":
        cl = np.zeros((20, 2), np.int64)
        cl[5] = -1
        f = npz_file(d / "d.npz", cl_train=cl, y_train=None, num_classes=np.int64(3))
        return ["search", "--dataset", "npz", "--data-dir", str(f), "--labels", "given"], \
            "cl_train row 5 has no complementary label (only -1 padding)"
    if name == "given_length_mismatch":
        f = npz_file(d / "d.npz", cl_train=np.arange(19) % 2, y_train=None)
        return ["search", "--dataset", "npz", "--data-dir", str(f), "--labels", "given"], \
            "cl_train has 19 rows but x_train has 20 images"
    if name == "cpus_per_trial_zero":
        return ["search", "--cpus-per-trial", "0"], "cpus_per_trial must be > 0"
    if name == "resume_missing_search":
        return ["resume", "nope"], "no search 'nope'"
    if name == "resume_corrupt_state":
        (d / "broken").mkdir()
        (d / "broken" / "mixtune.json").write_text("{not json")
        return ["resume", str(d / "broken")], "is corrupt (not JSON)"
    if name == "resume_tampered_name":
        (d / "tampered").mkdir()
        (d / "tampered" / "mixtune.json").write_text('{"name": "../../etc", "space": "icm", "base": {}}')
        return ["resume", str(d / "tampered")], "search name '../../etc'"
    if name == "cluster_yaml_schema":
        (d / "cluster.yaml").write_text(yaml.safe_dump({
            "cluster_name": "x", "provider": {"type": "local", "head_ip": "10.0.0.1"},
            "max_workers": "many", "not_a_ray_field": 1}))
        return ["cluster-check", str(d / "cluster.yaml")], "cluster.yaml"
    raise AssertionError(name)


CASES = [
    "value_out_of_range", "alpha_zero", "unknown_config_key", "malformed_config_yaml", "wrong_type_in_config",
    "config_not_a_mapping", "missing_dataset", "truncated_idx", "truncated_gzip_idx", "wrong_magic",
    "count_mismatch", "npz_wrong_shape", "npz_label_mismatch", "npz_missing_array", "space_empty_range",
    "space_malformed_yaml", "space_unknown_param", "space_unknown_preset", "k_larger_than_train_set",
    "searched_k_larger_than_train_set", "num_cl_too_large", "cuda_without_gpus", "unreachable_tracking_uri",
    "tracking_uri_with_password_unreachable", "tracking_sqlite_missing_folder", "tracking_bad_scheme",
    "unreachable_ray_address", "malformed_ray_address", "num_cpus_with_ray_address", "storage_path_not_writable", "results_dir_not_writable",
    "name_escapes_results", "name_absolute", "num_samples_zero", "unknown_metric", "val_fraction_too_large",
    "val_fraction_negative", "val_split_too_small", "metric_needs_true_val_labels", "metric_needs_cl",
    "metric_without_val_split", "default_metric_without_val_split", "metric_without_test_labels",
    "mode_against_metric", "metric_not_selectable", "space_searches_data", "given_labels_missing",
    "true_labels_missing", "given_cl_out_of_range", "given_mask_all_ones", "given_row_without_cl",
    "given_length_mismatch", "cpus_per_trial_zero", "resume_missing_search",
    "resume_corrupt_state", "resume_tampered_name", "cluster_yaml_schema",
]

# every message printed, for the issue note (`pytest -s` shows them)
PRINTED: dict[str, str] = {}


@pytest.mark.parametrize("name", CASES)
def test_bad_input_is_one_line_and_writes_nothing(name, tmp_path, monkeypatch, capsys):
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("MIXTUNE_CACHE", str(tmp_path / "cache"))
    argv, expected = make_case(name, tmp_path)
    results, db = tmp_path / "results", tmp_path / "mlflow.db"
    if argv[0] == "search":
        if "--results-dir" not in argv:
            argv += ["--results-dir", str(results)]
        if "--tracking-uri" not in argv:
            argv += ["--tracking-uri", f"sqlite:///{db}"]
        argv += ["--num-cpus", "1", "--epochs", "2"]
    elif argv[0] == "resume":
        argv += ["--results-dir", str(results)]
    before = sorted(p.name for p in tmp_path.iterdir())
    capsys.readouterr()
    t0 = time.monotonic()
    rc = cli.main(argv)
    seconds = time.monotonic() - t0
    out, err = capsys.readouterr()
    PRINTED[name] = err.strip()
    print(f"\n{name}: {err.strip()}")
    assert rc == 2, (rc, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("mixtune: error: ")
    assert expected in lines[0], lines[0]
    assert "s3cret" not in err + out
    assert seconds < 20, f"{name} took {seconds:.1f}s to fail"
    # nothing written: no results folder, no MLflow store, no cache, nothing in the working folder
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not results.exists() and not db.exists() and not (tmp_path / "cache").exists()
    assert list(work.iterdir()) == []


def test_unreachable_tracking_uri_fails_fast(tmp_path, monkeypatch, capsys):
    """A tracking server that never answers (accepts, then silence) fails within seconds."""
    monkeypatch.chdir(tmp_path)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        from tuner.tracking import callback as tracking

        t0 = time.monotonic()
        with pytest.raises(tracking.TrackingError, match="is unreachable"):
            tracking.check_tracking_uri(f"http://127.0.0.1:{port}", timeout=2.0)
        assert time.monotonic() - t0 < 10
