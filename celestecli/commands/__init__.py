"""One module per ``celeste`` subcommand; each exposes a click command."""

from celestecli.commands.fields_cmd import fields_command
from celestecli.commands.validate import validate_command

ALL_COMMANDS = [fields_command, validate_command]
