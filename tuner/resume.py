"""`mixtune resume`: continue a search whose driver stopped (Ctrl-C, SIGKILL, lost machine)."""

from __future__ import annotations

from tuner.search import SearchOutcome, SearchSettings, execute, prepare, quiet_logs


def resume_search(settings: SearchSettings, echo=print) -> SearchOutcome:
    quiet_logs()
    settings, dataset, space = prepare(settings)
    from tuner import tracking

    client = tracking.client(settings.tracking_uri)
    client.update_run(settings.parent_run_id, status="RUNNING")
    echo(f"resuming search {settings.name} from {settings.folder}")
    return execute(settings, dataset, space, client, echo, restore=True)
