"""The Typer app of `nmt`, its entry point and what every command shares: one-line errors, interruption, dry runs.

Each command lives in its own module of this package and registers itself with `command`; a command parses its
options, builds a config and calls one library function.
"""

from __future__ import annotations

import functools
import importlib
import os
import signal
import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from nmt import __version__, atomic
from nmt.errors import NmtError

if TYPE_CHECKING:  # numpy and sentencepiece at run time: only when a command resolves a search
    from nmt.engines.spec import ResolvedSearch

app = typer.Typer(
    help="Neural machine translation with the Transformer (Vaswani et al., 2017): prepare, train, translate, score.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
console = Console(stderr=True)  # stdout carries translations and scores only


def main() -> None:
    """Entry point: user errors become one line on stderr and a non-zero exit, never a traceback."""
    # SIGTERM (a scheduler, `kill`) ends a command the way Ctrl-C does: temporary files removed, one line, exit 130.
    # `nmt train` installs its own handler while it runs (save a checkpoint, then stop).
    atomic.interrupted.clear()  # (a test runs many commands in one process)
    signal.signal(signal.SIGTERM, _interrupt)
    for module in ("typer._click.exceptions", "click.exceptions"):  # Typer >= 0.24 carries its own click
        try:
            importlib.import_module(module).UsageError.show = _show_usage_error
        except (ImportError, AttributeError):
            pass
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not where a shell made us ignore it
        signal.signal(signal.SIGINT, _interrupt)
    try:
        app()
    except NmtError as error:  # the message is text, not markup: `nmt[serve]`, `ref[de].txt` keep their brackets
        console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except BrokenPipeError:  # `nmt translate | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    except KeyboardInterrupt:
        console.print("[bold red]interrupted[/]")
        sys.exit(130)
    except OSError as error:  # disk full, permission denied, ...: say which file and why
        where = f"{error.filename}: " if error.filename else ""
        console.print(f"[bold red]error:[/] {escape(where + str(error.strerror or error))}", highlight=False,
                      soft_wrap=True)
        sys.exit(1)


def _readable_usage() -> None:
    """Help as a person writes it: a required argument as `NAME...` (Typer's own help braces it, `{NAME}...`) and a
    list-valued option or argument by its element type (`<path>`, not `<list[Path]>`). Typer has no setting for
    either, so its two display methods are replaced, once, where they exist."""
    try:
        from typer.core import TyperArgument, TyperOption
    except ImportError:
        return
    if hasattr(TyperArgument, "_usage_display_name"):
        def usage_name(self) -> str:
            name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
            return name + ("..." if self.nargs != 1 else "")
        TyperArgument._usage_display_name = usage_name
    for cls in (TyperArgument, TyperOption):
        original = getattr(cls, "display_type", None)
        if original is None or getattr(original, "readable", False):
            continue

        def display_type(self, ctx, _original=original) -> str:
            shown = _original(self, ctx)
            if isinstance(shown, str) and shown.startswith("<list[") and shown.endswith("]>"):
                shown = f"<{shown[6:-2].lower()}>"
            return shown
        display_type.readable = True
        cls.display_type = display_type


_readable_usage()


def _show_usage_error(error, file=None) -> None:
    """Click's usage errors (an unknown option, a value that is not a number) as our one line, with the way on."""
    command = error.ctx.command_path if error.ctx is not None else "nmt"
    console.print(f"[bold red]error:[/] {error.format_message().rstrip('.')} (see `{command} --help`)", highlight=False,
                  soft_wrap=True)


def _interrupt(signum, frame) -> None:
    # One interruption is enough: the cleanup it starts must not be cut short by a second signal (`timeout` sends
    # SIGTERM to the command and then to its whole process group; an impatient user presses Ctrl-C twice), which
    # would leave a temporary file behind and print a traceback from an exit handler. kill -9 still ends us at once.
    for number in (signal.SIGTERM, signal.SIGINT):
        if signal.getsignal(number) is _interrupt:
            signal.signal(number, signal.SIG_IGN)
    atomic.interrupted.set()  # should the exception be swallowed on its way up, no file is put in place after it
    _raise_outside_imports(signum, frame)


def _raise_outside_imports(signum, frame) -> None:
    """Raise KeyboardInterrupt, but not inside an import (a command imports torch lazily, for a second or more):
    there the exception can be swallowed by an import's own error handling, and the command would then run to its
    end with the signals ignored, or abort inside a C extension's initialization. Inside one, look again in 50 ms."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            signal.signal(signal.SIGALRM, _raise_outside_imports)
            signal.setitimer(signal.ITIMER_REAL, 0.05)
            return
        frame = frame.f_back
    raise KeyboardInterrupt


def command(name: str, parent: typer.Typer = app, label: str | None = None):
    """Register a command whose interruption (Ctrl-C, SIGTERM) ends in one line and exit 130. Typer would turn the
    KeyboardInterrupt into a silent exit 130 before `main` could say anything."""
    def register(function):
        @functools.wraps(function)
        def run(*args, **kwargs):
            try:
                return function(*args, **kwargs)
            except KeyboardInterrupt as stop:  # its message, where it has one, says what was kept
                console.print(f"[bold red]interrupted:[/] nmt {label or name} stopped before it finished; "
                              f"{escape(str(stop)) or 'no output file was left half-written'}", highlight=False,
                              soft_wrap=True)
                raise typer.Exit(130) from None
        return parent.command(name=name)(run)
    return register


def stdin():
    """Standard input as bytes; a closed one (`<&-`) is a user error, not an AttributeError."""
    if sys.stdin is None:
        raise NmtError("standard input is closed: pipe text in, or name a file (--input / --hyp)")
    return sys.stdin.buffer


def dry_run(command_name: str, facts: dict | None = None, check=None) -> bool:
    """With NMT_DRY_RUN=1 in the environment a command stops once its options are parsed and checked, saying what
    it would do: how the GPU-cluster scripts in examples/ are tested on a machine without GPUs or corpora. `check`
    runs the checks that a real run would make later (it raises NmtError)."""
    if not dry_run_asked():
        return False
    if check is not None:
        check()
    if os.environ.get("RANK", "0") != "0":  # under torchrun every process checks; the first one says so
        return True
    console.print(f"dry run: nmt {command_name}: options are valid", highlight=False)
    for key, value in (facts or {}).items():
        console.print(f"  {key}: {value}", highlight=False, soft_wrap=True)
    return True


def dry_run_asked() -> bool:
    return os.environ.get("NMT_DRY_RUN", "") not in ("", "0")


def set_threads(threads: int | None) -> None:
    """PyTorch's CPU threads, where --threads is given (torch is imported only then: `--help` stays fast)."""
    if threads is None:
        return
    from nmt.ranges import THREADS
    if not THREADS.holds(threads):
        raise NmtError(f"--threads must be {THREADS.describe()}, got {threads}")
    import torch
    torch.set_num_threads(threads)


def print_search_notes(resolved: ResolvedSearch, doing: str, unless: str) -> None:
    """Say where the search settings came from when they are not all the user's (nmt.engines.spec.ResolvedSearch):
    `doing` ("decoding"), `unless` ("options override them")."""
    search = resolved.search
    if resolved.stored_by:
        shown = {"beam": f"beam {search.beam}", "lenpen": f"lenpen {search.lenpen}",
                 "lenpen_style": f"the {resolved.stored_style} style"}
        given = [shown[name] for name in ("beam", "lenpen") if name not in resolved.taken]
        console.print(f"[cyan]note:[/] {doing} with {resolved.stored_by}: "
                      f"{', '.join(shown[name] for name in resolved.taken)}"
                      + (f" ({', '.join(given)} as given)" if given else "") + unless, highlight=False,
                      soft_wrap=True)
    if resolved.style_replaced:
        console.print(f"[yellow]note:[/] CTranslate2 normalizes scores by |Y|^alpha only: --lenpen-style length "
                      f"is used instead of {resolved.stored_style}", highlight=False, soft_wrap=True)


def line_numbers(positions: list[int]) -> str:
    """`line 3`, `lines 3, 7` (numbered from 1), the first 20 named."""
    shown = ", ".join(str(i + 1) for i in positions[:20]) + (", ..." if len(positions) > 20 else "")
    return f"line{'s' * (len(positions) > 1)} {shown}" + (f" ({len(positions)} in all)" if len(positions) > 20 else "")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nmt {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False) -> None:
    """Neural machine translation with the Transformer (Vaswani et al., 2017)."""
