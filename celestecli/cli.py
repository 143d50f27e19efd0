"""The ``celeste`` command line: a click group whose subcommands live in celestecli.commands.

This module only parses options, sets up logging and maps celeste's exceptions to exit codes
(ARCHITECTURE.md 1): 0 success, 1 runtime error, 2 usage error, 3 partial failure; 130 after
Ctrl-C and 141 when the reader of stdout goes away, as for a process killed by SIGINT or
SIGPIPE.
"""

import importlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from celestecli import __version__
from celestecli.commands import COMMANDS
from celestecli.errors import CelesteError, PartialFailure, UsageError
from celestecli.logsetup import configure_logging
from celestecli.parallel.interrupts import EXIT_SIGINT

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE


@dataclass
class AppContext:
    """Options of the ``celeste`` group, handed to every subcommand."""

    verbose: int
    quiet: int
    data_dir: Path


class CelesteGroup(click.Group):
    """A click group that loads its subcommands when they are used (``commands.COMMANDS``) and
    turns celeste's exceptions into messages and exit codes."""

    def list_commands(self, ctx) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attribute = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attribute)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UsageError as exc:  # shown with the usage of the subcommand that raised it
            name = ctx.invoked_subcommand
            command = self.get_command(ctx, name) if name else None
            usage_ctx = ctx if command is None else click.Context(command, info_name=name,
                                                                  parent=ctx)
            raise click.UsageError(str(exc), usage_ctx) from exc
        except PartialFailure as exc:
            click.echo(f"celeste: partial failure: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except CelesteError as exc:
            click.echo(f"celeste: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:  # Ctrl-C in a command that has no cleaner way to stop
            click.echo("celeste: interrupted", err=True)
            ctx.exit(EXIT_SIGINT)
        except BrokenPipeError:
            # The reader of stdout has gone (``celeste ... -o - | head``): stop quietly, with
            # the status of a process killed by SIGPIPE, as cat or grep would.  Point stdout
            # at /dev/null so that Python's final flush does not fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(EXIT_BROKEN_PIPE)


def _version_message() -> str:
    from celestecli._kernels.openmp_info import openmp_enabled
    from celestecli.revision import git_revision
    from celestecli.threads import effective_threads

    omp = "enabled" if openmp_enabled() else "disabled"
    commit = f", git {git_revision()}" if git_revision() else ""
    return (
        f"celeste {__version__} (Python {sys.version.split()[0]}{commit})\n"
        f"OpenMP: {omp}, threads available: {effective_threads()}"
    )


def _print_version(ctx, _param, value):
    if value and not ctx.resilient_parsing:
        click.echo(_version_message())
        ctx.exit(0)


@click.group(cls=CelesteGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=_print_version, help="Show version, OpenMP status and threads; exit.")
@click.option("-v", "--verbose", count=True, help="More log output (repeatable).")
@click.option("-q", "--quiet", count=True, help="Less log output (repeatable).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              envvar="CELESTE_DATA_DIR", default=Path("sdss"), show_default=True,
              help="Local SDSS data directory (env CELESTE_DATA_DIR).")
@click.pass_context
def main(ctx, verbose, quiet, data_dir):
    """celeste: build astronomical catalogs from SDSS images by variational inference.

    FIELD arguments are RUN/CAMCOL/FIELD or RUN-CAMCOL-FIELD (e.g. 4263/5/119); use
    --fields FILE or '-' to read one field per line from a file or stdin.
    """
    configure_logging(verbose, quiet)
    ctx.obj = AppContext(verbose=verbose, quiet=quiet, data_dir=data_dir)


