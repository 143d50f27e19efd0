"""One module per ``celeste`` subcommand; each exposes a click command."""

from celestecli.commands.fetch import fetch_command
from celestecli.commands.fields_cmd import fields_command

ALL_COMMANDS = [fields_command, fetch_command]
