"""The ``engage`` command line. Start-up imports only typer: each command imports what it needs."""

from ._main import app, main

__all__ = ["app", "main"]
