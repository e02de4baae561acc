"""Search-side subcommands; filled in by the search application."""


def add_search_commands(sub) -> None:
    return None
