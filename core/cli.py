"""The ``fsx`` command line: a thin layer over the Python API (every command calls a public function).

The commands themselves live in ``fsx.commands``; this module only assembles them into one group, so that the
two never import each other."""

from __future__ import annotations

import sys

import click

import fsx
from fsx import commands


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(fsx.__version__, prog_name="fsx")
def main() -> None:
    """fsx: compact, disentangled face embeddings with attribute plugins."""


for _command in vars(commands).values():
    if isinstance(_command, click.Command):
        main.add_command(_command)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
