"""Errors a user can fix; the CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """A bad flag, file, URI, address or search reference."""
