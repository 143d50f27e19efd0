"""click options shared by the subcommands that take FIELD arguments."""

import sys
from pathlib import Path

import click

from celestecli.fields import FieldID, collect_fields


def _override_data_dir(ctx, _param, value):
    if value is not None:
        ctx.obj.data_dir = value
    return value


def data_dir_option(func):
    """A subcommand-level --data-dir, so it may follow the subcommand's name too."""
    return click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
                        expose_value=False, callback=_override_data_dir,
                        help="Local SDSS data directory (overrides celeste --data-dir).")(func)


def field_arguments(func):
    """Add FIELD..., --fields FILE and a subcommand-level --data-dir to a command."""
    func = data_dir_option(func)
    func = click.option("--fields", "fields_file", type=click.Path(dir_okay=False, path_type=Path),
                        help="Read fields from FILE, one per line.")(func)
    return click.argument("field_tokens", metavar="FIELD...", nargs=-1)(func)


def resolve_fields(field_tokens, fields_file) -> list[FieldID]:
    """Fields named on the command line, in --fields and on stdin ('-'); at least one."""
    fields = collect_fields(field_tokens, fields_file, sys.stdin)
    if not fields:
        raise click.UsageError("no fields given: pass FIELD..., --fields FILE, or '-' for stdin")
    return fields
