"""The ``fsx`` command line: a thin layer over the Python API (every command calls a public function).

The commands themselves live in ``fsx.commands`` (models and data) and ``fsx.model_commands`` (using a model);
this module only assembles them into one group."""

from __future__ import annotations

import sys

import click

from fsx import commands, model_commands
from fsx.version import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fsx")
def main() -> None:
    """fsx: compact, disentangled face embeddings with attribute plugins."""


for _module in (commands, model_commands):
    for _command in vars(_module).values():
        if isinstance(_command, click.Command):
            main.add_command(_command)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
