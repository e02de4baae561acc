"""Storage that fails mid-search: `--storage-path` or `--results-dir` stops being a folder.

Once the first trial is done, the test moves the folder aside and puts a file in its place
(root ignores permission bits, a file in the way stops everyone). The search must stop with
one line naming the path and exit code 2; the Optuna study and MLflow must agree with what
finished (no trial FAILED for it, no run left RUNNING); and once the folder is back,
`mixtune resume` must finish every trial, each once, with every epoch logged once.
"""

from __future__ import annotations

import shutil

import pytest
from fault_tools import LiveDriver, cli_env, optuna_trials, search_runs

pytestmark = pytest.mark.slow

SAMPLES, EPOCHS = 4, 6


@pytest.mark.parametrize("broken", ["storage", "results"])
def test_storage_that_fails_mid_search_stops_it_resumably(tmp_path, broken):
    name = f"fault-{broken}"
    storage, results = tmp_path / "storage", tmp_path / "results"
    folder = results / name
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    argv = ["search", "--space", "icm", "--num-samples", str(SAMPLES), "--epochs", str(EPOCHS),
            "--grace-period", str(EPOCHS), "--hidden", "32", "--num-threads", "1", "--num-cpus", "2",
            "--max-concurrent", "2", "--name", name, "--results-dir", str(results),
            "--storage-path", str(storage), "--tracking-uri", uri]
    target = storage if broken == "storage" else results
    aside = tmp_path / f"{target.name}.aside"
    d = LiveDriver(argv, tmp_path, cli_env(tmp_path))
    try:
        d.wait_line(lambda ln: " done, " in ln)
        target.rename(aside)
        target.write_text("a file where the folder was\n")
        rc = d.finish()
    finally:
        d.kill_group()
    err = [ln for ln in d.err if ln.strip()]
    assert rc == 2, (d.out, d.err)
    shown = storage if broken == "storage" else folder
    what = "storage path" if broken == "storage" else "results folder"
    why = "it is a file now" if broken == "storage" else f"{results} is a file now"
    assert err[-1] == (f"mixtune: error: {what} {shown} is not writable ({why}); the search stopped, its "
                       f"finished trials are kept: once the path is back, continue it with: mixtune resume {folder}"), "\n".join(d.err)
    assert not [ln for ln in d.err if "Traceback" in ln], "\n".join(d.err)
    done = len([ln for _, ln in d.lines if " done, " in ln])

    # put the folder back, then look: nothing was marked failed for it, nothing is left RUNNING
    target.unlink()
    aside.rename(target)
    study = optuna_trials(folder, name)
    assert not [t for t in study if t.state.name == "FAIL"], [(t.state, t.user_attrs) for t in study]
    assert len([t for t in study if t.state.name == "COMPLETE"]) >= done
    _, parents, trials = search_runs(uri, name)
    assert [p.info.status for p in parents] == ["KILLED"]
    assert trials and all(r.info.status in ("FINISHED", "KILLED") for r in trials), \
        [(r.info.status, r.data.tags.get("state")) for r in trials]
    assert len([r for r in trials if r.info.status == "FINISHED"]) >= done

    d = LiveDriver(["resume", str(folder)], tmp_path, cli_env(tmp_path))
    try:
        rc = d.finish()
    finally:
        d.kill_group()
    assert rc == 0, d.out + "\n".join(d.err)
    assert f"search {name} finished: {SAMPLES} trials (0 failed)" in d.out
    client, parents, trials = search_runs(uri, name)
    assert [p.info.status for p in parents] == ["FINISHED"]
    assert len(trials) == SAMPLES and {r.info.status for r in trials} == {"FINISHED"}
    for r in trials:
        assert sorted(m.step for m in client.get_metric_history(r.info.run_id, "epoch")) == \
            list(range(1, EPOCHS + 1))
    study = optuna_trials(folder, name)
    complete = [t for t in study if t.state.name == "COMPLETE"]
    assert len(complete) == SAMPLES
    # a trial the stale snapshot never recorded is marked as such, not as a failure of its own
    assert all("orphaned" in t.user_attrs.get("error", "") for t in study if t.state.name == "FAIL")
    shutil.rmtree(storage, ignore_errors=True)
