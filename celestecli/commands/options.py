"""click options shared by the subcommands that take FIELD arguments."""

import sys
from pathlib import Path

import click

from celestecli.fields import FieldID, collect_fields


def field_arguments(func):
    """Add FIELD... and --fields FILE to a command."""
    func = click.option("--fields", "fields_file", type=click.Path(dir_okay=False, path_type=Path),
                        help="Read fields from FILE, one per line.")(func)
    return click.argument("field_tokens", metavar="FIELD...", nargs=-1)(func)


def resolve_fields(field_tokens, fields_file) -> list[FieldID]:
    """Fields named on the command line, in --fields and on stdin ('-'); at least one."""
    fields = collect_fields(field_tokens, fields_file, sys.stdin)
    if not fields:
        raise click.UsageError("no fields given: pass FIELD..., --fields FILE, or '-' for stdin")
    return fields
