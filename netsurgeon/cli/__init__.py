"""The ``netsurgeon`` command line: thin commands over the library.

Every command maps a :class:`~netsurgeon.errors.NetsurgeonError` to one line on stderr and exit code 1;
set ``NETSURGEON_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import typer

from netsurgeon.cli import apply, compare, demo, export_hub, finetune, inspect, passes, run, verify
from netsurgeon.cli._common import SuggestingCommand

app = typer.Typer(
    name="netsurgeon",
    help="Surgery on trained CNNs: apply published architectural edits, verify, export.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for module in (passes, inspect, apply, finetune, run, verify, export_hub, compare, demo):
    module.register(app)
for command in app.registered_commands:  # no "Possible options: --help" for an unknown option
    command.cls = SuggestingCommand


def main() -> None:
    app()


__all__ = ["app", "main"]
