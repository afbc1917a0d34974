"""The `accelsim` command line.

Each part of the project contributes its own click group or commands (traces: `trace`,
simulator: `run`, `plot`, `demo`, models: `train`, analysis: `sweep`). Those modules import
only click at the top; heavy imports (torch, numba) happen inside the commands.
"""

from __future__ import annotations

import sys

import click

from accelsim import __version__
from accelsim.atomic import os_error_reason
from accelsim.errors import AccelsimError
from accelsim.plaintext import visible


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="accelsim")
def cli() -> None:
    """Cycle-level simulation of sparse DNN accelerators on traces of pruned networks."""


# Each part adds its commands through a `register(cli)` function in these modules.
COMMAND_MODULES = (
    "accelsim.traces.cli",
    "accelsim.cli_sim",
    "accelsim.models.cli",
    "accelsim.analysis.cli",
    "accelsim.cli_sweep",  # adds `sweep arch` to the sweep group of accelsim.analysis.cli
    "accelsim.cli_cache",
)


def _register() -> None:
    """Attach the sub-commands of each part (each module imports only click at the top)."""
    import importlib

    for name in COMMAND_MODULES:
        importlib.import_module(name).register(cli)


_register()


def _usage_line(exc: click.UsageError) -> str:
    """A click usage error (bad option value, unknown option, missing argument) as one line."""
    where = f"{exc.ctx.command_path}: " if exc.ctx is not None else ""
    hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
    return f"{where}{visible(exc.format_message())}{hint}"


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: user errors become one line on stderr and exit code 2.

    AccelsimError carries a message naming the file or option; click's usage errors are folded
    to one line; an OSError that no writer or reader mapped (the last resort) is shown as its
    file name and reason. Messages are made visible (a newline in a name stays on the line)."""
    try:
        code = cli.main(args=argv, prog_name="accelsim", standalone_mode=False)
    except AccelsimError as exc:
        click.echo(f"error: {visible(exc)}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        click.echo(f"error: {_usage_line(exc)}", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"error: {visible(exc.format_message())}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    except MemoryError:  # the last resort: sizes are bounded before allocation, but a machine
        # may have less free memory than a bound allows
        click.echo("error: out of memory: the machine has less free memory than these inputs "
                   "need (fewer samples, smaller layers or a smaller batch)", err=True)
        sys.exit(2)
    except Exception as exc:  # the last resort for OS errors no writer or reader mapped
        reason = os_error_reason(exc)
        if reason is None:
            raise
        filename = getattr(exc, "filename", None)
        where = f"{visible(filename)}: " if filename else ""
        click.echo(f"error: {where}{reason}", err=True)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
