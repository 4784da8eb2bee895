"""One error boundary for every liftlab command line.

Each console script (``synth``, ``evalhub``, ``fairness``, ``raters``) runs its Typer app through
:func:`run`: any exception a command did not turn into its own one-line message ends as a single
line naming the file, field, id or URL, on standard error, with exit code 2. The traceback is shown
only with ``--debug`` (anywhere on the command line) or ``LIFTLAB_DEBUG=1``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

EXIT_ERROR = 2
DEBUG_ENV = "LIFTLAB_DEBUG"


def _first_line(text: str) -> str:
    return next((ln.strip() for ln in str(text).splitlines() if ln.strip()), "")


def describe(exc: BaseException) -> str:
    """One line for an exception of the environment (catalog, disk, files) or a liftlab error.

    Catalog errors name the catalog URL (password hidden) and say what to do
    (:func:`db.engine.catalog_error_line`). Disk errors name the file and the system's reason (and,
    for a full disk, that ``synth build --resume`` finishes an interrupted build). Anything else: its
    first line (a ``KeyError``'s message without the quotes).
    """
    from db.engine import catalog_error_line, current_url

    line = catalog_error_line(exc, current_url())
    if line is not None:
        return line
    if isinstance(exc, OSError):
        where = exc.filename or ""
        reason = exc.strerror or _first_line(exc)
        extra = ""
        if getattr(exc, "errno", None) == 28:  # ENOSPC
            extra = "; free space, then finish an interrupted build with `synth build --resume`"
        return f"{where}: {reason}{extra}" if where else f"{reason}{extra}"
    text = _first_line(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc)
    return text or type(exc).__name__


def run(app: Callable[..., object], argv: list[str] | None = None) -> None:
    """Run a Typer app as a console script behind the one error boundary (see the module)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    args = [a for a in args if a != "--debug"]
    try:
        # outside standalone mode click returns a command's exit code (typer.Exit) instead of exiting
        code = app(args=args, prog_name=os.path.basename(sys.argv[0]) if sys.argv else None, standalone_mode=False)
        if isinstance(code, int) and not isinstance(code, bool):
            sys.exit(code)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the boundary: everything becomes one line
        kinds = {c.__name__ for c in type(exc).__mro__}  # click's classes, or Typer's vendored copies
        if "Exit" in kinds and hasattr(exc, "exit_code"):
            sys.exit(exc.exit_code)
        if "NoArgsIsHelpError" in kinds:  # no arguments: the help, as click shows it
            exc.show()
            sys.exit(getattr(exc, "exit_code", EXIT_ERROR))
        if "Abort" in kinds:
            sys.stderr.write("aborted\n")
            sys.exit(1)
        if "ClickException" in kinds:  # a bad option value or an unknown option: one line too
            param = getattr(exc, "param", None)
            where = "/".join(getattr(param, "opts", None) or []) or getattr(param, "name", None)
            message = exc.format_message()
            sys.stderr.write(f"error: {where}: {message}\n" if where and where not in message else f"error: {message}\n")
            sys.exit(EXIT_ERROR)
        if debug:
            raise
        sys.stderr.write(f"error: {describe(exc)}\n")
        sys.exit(EXIT_ERROR)


def console_script(app: Callable[..., object]) -> Callable[[], None]:
    """The console-script entry point of a Typer app: the app behind :func:`run`."""

    def main() -> None:
        run(app)

    main.__doc__ = "Run the command line behind liftlab's one error boundary (one line and exit 2 for any failure)."
    return main
