"""The `nmt` command line: `app.py` holds the Typer app and what every command shares, `options.py` the options
several commands take, `progress.py` the Rich displays, and one module per command (or command group) parses its
options and calls one library function. Importing this package registers every command, in the order `--help`
lists them."""

from nmt.cli import prepare, train, translate, serve, tune, logprob, convert, score  # noqa: F401 (registration)
from nmt.cli.app import app, console, main

__all__ = ["app", "console", "main"]
