"""The reproduce command's quick mode end to end: report, tables, plots and raw results are written."""

import json

import pytest
import torch

from experiments.reproduce import main


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)  # the command sets its own thread count


@pytest.mark.timeout(120)
def test_quick_mode_writes_the_report(tmp_path):
    out = tmp_path / "docs"
    assert main(["--quick", "--out", str(out), "--cache-dir", str(tmp_path / "cache")]) == 0
    text = (out / "results.md").read_text()
    for heading in (
        "## Settings",
        "## Summary: each claim, the gap in points (mean over seeds) and the verdict",
        "## 1. Intra-Cluster Mixup for complementary-label learning",
        "## 2. Clustering features: raw pixels vs PCA vs a self-supervised encoder",
        "## 3. Multi-Mix: K interpolations per pair",
        "## 4. Infinite Class Mixup: dual-contrastive loss vs mixup cross-entropy",
    ):
        assert heading in text
    # the tables each claim needs, with their header rows
    for header in (
        "| dataset | loss | none | mixup | icm | icm − mixup | icm − none | mixup − none |",
        "| dataset | pairing | noise (paper, pair) | noise (anchor side) | purity | test acc |",
        "| dataset | setting | none | mixup | icm | icm − mixup | icm − none |",
        "| dataset | num_cl | random | icm k=10 |",
        "| dataset | mix level | K | test acc | ECE | acc gain vs K=1 | ECE gain vs K=1 |",
        "| dataset | training set | contrastive_weight | test acc | ECE | acc gain vs w=0 |",
    ):
        assert header in text
    assert "| digits | encoder |" in text and "| digits | ure_tnn |" in text
    assert "multiple, num_cl=2" in text and "long-tailed 10" in text
    for png in ("icm_noise_vs_k.png", "features.png", "multimix.png", "infinite_class.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
        assert f"]({png})" in text
    runs = json.loads((out / "results.json").read_text())
    assert runs["profile"]["name"] == "quick" and len(runs["runs"]) > 10
    assert all(0.0 <= r["final"]["test_acc"] <= 1.0 for r in runs["runs"])
