"""The reproduce command's quick mode end to end: report, tables, plots and raw results are written.

The quick profile runs every section of every profile (the paper profile's main table,
tuned-alike searches and open questions included) on digits at a tiny budget, so the code
the long profiles run is exercised here in seconds.
"""

import json
import re

from trainables.core.metric_table import default_metric

import pytest
import torch

from experiments.reproduce import main
from experiments.runner import Runner, quick_profile
from experiments.suites import noise_and_purity
from trainables.core.fit import prepare

SELECTION = "<!-- selection:start -->\n## How well a search selects\n\nkept text 12345\n<!-- selection:end -->"
PROTOCOL = "<!-- icm-protocol:start -->\n## ICM as its authors ran it\n\nkept text 67890\n<!-- icm-protocol:end -->"


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)  # the command sets its own thread count


@pytest.mark.timeout(120)
def test_quick_mode_writes_the_report(tmp_path):
    out = tmp_path / "docs"
    out.mkdir()
    # an earlier report holding the section experiments.selection owns: it must survive
    (out / "results.md").write_text("# old report\n\nold text\n\n" + SELECTION + "\n\n" + PROTOCOL + "\n")
    args = ["--quick", "--out", str(out), "--cache-dir", str(tmp_path / "cache")]
    assert main(args) == 0
    text = (out / "results.md").read_text()
    for heading in (
        "## Settings",
        "## Summary: each claim, the gap in points (mean over seeds) and the verdict",
        "## 1. Intra-Cluster Mixup for complementary-label learning",
        "## 2. Clustering features: raw pixels vs PCA vs a self-supervised encoder",
        "## 3. Multi-Mix: K interpolations per pair",
        "## 4. Infinite Class Mixup: dual-contrastive loss vs mixup cross-entropy",
        "## Main table: none / mixup / ICM at converged budgets",
        "## Every method tuned alike",
        "## Open questions at the converged budget",
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
        "| dataset | loss | none | mixup | icm | icm − mixup | icm − none | mixup − none | last-quarter move |",
        "| loss | digits | field (MNIST, MLP) | source |",
        f"| dataset | method | trials | selected config | {default_metric('complementary')} | test acc | gap to best other (verdict) |",
        "| dataset | method | trials | selected config | val_acc | test acc | gap to best other (verdict) |",
        "| dataset | num_cl | none | mixup | icm | icm − mixup | icm − none |",
        "| dataset | K | test acc | ECE | acc gain vs K=1 | ECE gain vs K=1 | last-quarter move |",
    ):
        assert header in text
    assert "| digits | encoder |" in text and "| digits | ure_tnn |" in text
    assert "multiple, num_cl=2" in text and "long-tailed 10" in text
    for method in ("none", "mixup", "icm", "multimix", "infinite_class"):
        assert f"| digits | {method} | 2 |" in text  # every method searched with the same number of trials
    assert "| digits | MLP 8-8 |" in text  # the low-capacity row
    pngs = ("icm_noise_vs_k.png", "features.png", "multimix.png", "infinite_class.png", "paper_curves.png", "paper_multimix.png")
    for png in pngs:
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
        assert f"]({png})" in text
    # the selection section is carried over, once, and the old report's own text is gone
    assert text.count("<!-- selection:start -->") == 1 and "kept text 12345" in text and "old text" not in text
    assert text.count("<!-- icm-protocol:start -->") == 1 and "kept text 67890" in text  # issue 22's section too
    runs = json.loads((out / "results.json").read_text())
    assert runs["profile"]["name"] == "quick" and len(runs["runs"]) > 10
    assert all(0.0 <= r["final"]["test_acc"] <= 1.0 for r in runs["runs"])
    # the curves the plots draw are in results.json, one value per epoch
    curved = [r for r in runs["runs"] if "curve" in r]
    assert curved and all(len(r["curve"]["test_acc"]) == r["config"]["epochs"] for r in curved)
    n = len(runs["runs"])

    # a second invocation trains nothing: every run, the searches' trials included, comes from the run store
    assert main(args) == 0
    again = (out / "results.md").read_text()
    assert re.search(rf"- {n} training runs .*\({n} loaded from the run store", again)
    assert again.count("<!-- selection:start -->") == 1
    # the same seeded searches select the same configs
    table = lambda t: [line for line in t.splitlines() if line.startswith("| digits | ") and "=" in line]  # noqa: E731
    assert table(again) == table(text)


def test_noise_table_uses_the_rows_and_labels_fit_trains_on(tmp_path):
    """The training-free noise measurement sees fit's training rows, labels and clustering (split_and_label)."""
    r = Runner(quick_profile("../shared/data/mnist", str(tmp_path), 1))
    measured = noise_and_purity(r, "digits", "pca", 10, seed=0)
    cfg = r.seeded("digits", 0, method="icm", k=10, cluster_features="pca")
    data = prepare(cfg, r.dataset(cfg), torch.device("cpu"))
    assert data.clusters.cache_hit  # the clustering noise_and_purity made is the one fit uses
    counts = torch.zeros(10, 10).index_put_((data.clusters.assign, data.y), torch.ones(len(data.y)), accumulate=True)
    assert measured["purity"] == pytest.approx((counts.max(1).values.sum() / len(data.y)).item())
    # one uniform CL per row: a row's own label never names its class, so random pairs are noisy < 40% of the time
    assert 0.05 < measured["random_pair"] < 0.4
