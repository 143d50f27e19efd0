"""One module per ``celeste`` subcommand; each exposes a click command.

``COMMANDS`` maps each subcommand's name to ``module:attribute``: the command line imports a
subcommand's module only when that subcommand runs (or help lists it), so that, say,
``celeste fetch`` does not wait for the numerical stack to load.
"""

COMMANDS = {
    "fetch": "celestecli.commands.fetch:fetch_command",
    "infer": "celestecli.commands.infer:infer_command",
    "merge": "celestecli.commands.merge:merge_command",
    "validate": "celestecli.commands.validate:validate_command",
    "simulate": "celestecli.commands.simulate:simulate_command",
    "fields": "celestecli.commands.fields_cmd:fields_command",
}
