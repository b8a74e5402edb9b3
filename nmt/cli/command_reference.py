"""The command reference (docs/commands.md), written from the Typer app itself so that it cannot drift from the code.

    python -m nmt.cli.command_reference > docs/commands.md

tests/test_docs.py fails when the committed page differs from what this prints.
"""

from __future__ import annotations

import typer.main

from nmt.cli import app

HEADER = """# Command reference

Every command and option of `nmt`, generated from the command-line app (`python -m nmt.cli.command_reference >
docs/commands.md`; a test keeps this page in sync). `nmt COMMAND --help` prints the same. Messages and progress go to
stderr, results (translations, scores) to stdout.
"""


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _command(path: str, command, parent) -> list[str]:
    context = command.make_context(path.split()[-1], [], parent=parent, resilient_parsing=True)
    lines = [f"## `{path}`", "", " ".join((command.help or "").split()), ""]
    arguments = [p for p in command.params if p.param_type_name == "argument"]
    options = [p for p in command.params if p.param_type_name == "option"]
    usage = " ".join([path] + [p.make_metavar(context) if hasattr(p, "make_metavar") else p.name.upper()
                               for p in arguments] + (["[OPTIONS]"] if options else []))
    lines += ["```", usage, "```", ""]
    rows = []
    for param in arguments:
        record = param.get_help_record(context)
        rows.append((f"`{param.name.upper()}`", _cell(record[1]) if record else ""))
    for param in options:
        record = param.get_help_record(context)
        if record is None:
            continue
        rows.append((f"`{_cell(record[0])}`", _cell(record[1])))
    if rows:
        lines += ["| argument / option | meaning |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows] + [""]
    return lines


def command_reference() -> str:
    group = typer.main.get_command(app)
    root = group.make_context("nmt", [], resilient_parsing=True)
    lines = [HEADER]
    for name in group.list_commands(root):
        command = group.get_command(root, name)
        if hasattr(command, "list_commands"):  # a group such as `nmt export`
            inner = command.make_context(name, [], parent=root, resilient_parsing=True)
            for sub in command.list_commands(inner):
                lines += _command(f"nmt {name} {sub}", command.get_command(inner, sub), inner)
        else:
            lines += _command(f"nmt {name}", command, root)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    import sys

    sys.stdout.write(command_reference())
