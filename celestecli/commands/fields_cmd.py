"""``celeste fields``: normalise FIELD tokens and show where their files live locally."""

import click

from celestecli.commands.options import field_arguments, resolve_fields
from celestecli.sdss.layout import local_dir


@click.command("fields")
@field_arguments
@click.pass_obj
def fields_command(app, field_tokens, fields_file):
    """Print each FIELD as RUN/CAMCOL/FIELD with its local directory (stdout)."""
    for fid in resolve_fields(field_tokens, fields_file):
        click.echo(f"{fid}\t{local_dir(app.data_dir, fid, 'frame')}")
