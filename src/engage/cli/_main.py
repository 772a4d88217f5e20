"""The typer application, its global options, and the one place errors become exit codes.

Exit codes: 0 success; 1 a gate said no (``engage validate`` on a critical failure); 2 a usage error or
an :class:`~engage.errors.EngageError` (one line on stderr, the traceback only with ``--verbose``);
70 an unexpected internal error.
"""

from __future__ import annotations

import sys
import traceback

import typer

from engage import __version__

from . import (
    _audit,
    _card,
    _cloudwatch,
    _contract,
    _data,
    _explain,
    _fairness,
    _feedback,
    _governance,
    _keys,
    _registry,
    _review,
    _rollout,
    _score,
    _subject,
    _token,
    _train,
)

EXIT_ERROR = 2
EXIT_INTERNAL = 70

app = typer.Typer(
    name="engage",
    help="Engage: customer engagement, churn and lifetime-value models, run the Kubeflow way.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class _State:
    verbose = False


def _version(value: bool) -> None:
    if value:
        typer.echo(f"engage {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show tracebacks of errors."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    _State.verbose = verbose


app.command("generate")(_data.generate)
app.command("validate")(_data.validate)
app.command("train")(_train.train)
app.command("fairness")(_fairness.fairness)
app.command("explain")(_explain.explain)
app.command("card")(_card.card)
app.command("score")(_score.score)
app.command("feedback")(_feedback.feedback)
app.command("rollout")(_rollout.rollout)
app.command("cloudwatch-bridge")(_cloudwatch.cloudwatch_bridge)
app.add_typer(_registry.app, name="registry")
app.add_typer(_keys.app, name="keys")
app.add_typer(_audit.app, name="audit")
app.add_typer(_contract.app, name="contract")
app.add_typer(_review.app, name="review")
app.add_typer(_governance.app, name="governance")
app.add_typer(_subject.app, name="subject")
app.add_typer(_token.app, name="token")

#: the entry-point group through which the other Engage packages add their commands: each entry is a
#: ``register(app)`` function (``engage-components``: run, pipeline, promote; ``engage-serving``: serve,
#: deploy, rollback). A package that is not installed adds nothing.
PLUGIN_GROUP = "engage.cli"


def _register_plugins() -> None:
    from importlib.metadata import entry_points

    for entry in sorted(entry_points(group=PLUGIN_GROUP), key=lambda e: e.name):
        entry.load()(app)


_register_plugins()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``engage`` script; always ends in ``SystemExit`` with the exit code.

    typer (standalone mode) turns usage errors into exit 2 and ``typer.Exit`` into its code; anything
    else a command raises arrives here.
    """
    from engage.errors import EngageError

    try:
        app(args=argv, prog_name="engage")
    except EngageError as e:
        _report(f"engage: error: {e}")
        sys.exit(EXIT_ERROR)
    except Exception as e:  # a bug: still one line, with the way to see more
        _report(f"engage: internal error: {type(e).__name__}: {e} (run with --verbose for the traceback)")
        sys.exit(EXIT_INTERNAL)


def _report(line: str) -> None:
    if _State.verbose:
        traceback.print_exc(file=sys.stderr)
    print(line, file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    main()
