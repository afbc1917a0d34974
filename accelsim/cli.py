"""The `accelsim` command line.

Each part of the project contributes its own click group or commands (traces: `trace`,
simulator: `run`, `plot`, `demo`, models: `train`, analysis: `sweep`). Those modules import
only click at the top; heavy imports (torch, numba) happen inside the commands.
"""

from __future__ import annotations

import sys

import click

from accelsim import __version__
from accelsim.errors import AccelsimError


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
)


def _register() -> None:
    """Attach the sub-commands of each part (each module imports only click at the top)."""
    import importlib

    for name in COMMAND_MODULES:
        importlib.import_module(name).register(cli)


_register()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: user errors become one line on stderr and exit code 2."""
    try:
        code = cli.main(args=argv, prog_name="accelsim", standalone_mode=False)
    except AccelsimError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
