"""One module per ``celeste`` subcommand; each exposes a click command."""

from celestecli.commands.fetch import fetch_command
from celestecli.commands.fields_cmd import fields_command
from celestecli.commands.infer import infer_command
from celestecli.commands.merge import merge_command
from celestecli.commands.simulate import simulate_command
from celestecli.commands.validate import validate_command

ALL_COMMANDS = [fetch_command, infer_command, merge_command, validate_command, simulate_command,
                fields_command]
