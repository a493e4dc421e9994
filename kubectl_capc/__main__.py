"""Entry point of the `kubectl-capc` console script, `bin/kubectl-capc` and `python -m kubectl_capc`."""

from __future__ import annotations

import sys
import traceback

from kubectl_capc.domain.errors import CapcError, ExitCode, one_line

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; expected failures become one `error: ...` line on stderr."""
    from kubectl_capc.cli.app import PROG_NAME, app

    try:
        app(args=argv, prog_name=PROG_NAME)
    except SystemExit as done:
        return _exit_status(done.code)
    except CapcError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except Exception as err:
        # A bug: keep the traceback for the report, and avoid exit 1, which means "findings".
        traceback.print_exc()
        print(f"error: internal error: {one_line(str(err)) or type(err).__name__}", file=sys.stderr)
        return ExitCode.INTERNAL
    return ExitCode.OK


def _exit_status(code: object) -> int:
    if code is None:
        return ExitCode.OK
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return ExitCode.INTERNAL


if __name__ == "__main__":
    sys.exit(main())
