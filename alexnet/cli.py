"""Shared command-line conventions for every entry point of the toolkit.

Bad input is a `UsageError`: the CLI prints one line, `PROG: error: MESSAGE`,
naming the problem and the fix, and exits with status 2 (argparse's own
convention), with no traceback.
"""
from __future__ import annotations

import sys
from typing import Callable, Sequence

USAGE_EXIT = 2


def console(stderr: bool = False, **kwargs):
    """A console for the user: a pipe or log file gets wide tables rather than rich's
    80-column default, which would cut the right-hand columns off."""
    from rich.console import Console

    probe = Console(stderr=stderr, **kwargs)
    return probe if probe.is_terminal else Console(stderr=stderr, width=160, **kwargs)


class UsageError(Exception):
    """Input the user can fix: reported as one line, exit status 2."""


class CheckFailed(Exception):
    """A check the user asked for did not hold (e.g. ONNX vs TF outputs): exit status 1."""


def run(prog: str, main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run `main(argv)`, turning the toolkit's exceptions into one-line messages and exit codes."""
    try:
        return int(main(argv) or 0)
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return USAGE_EXIT
    except CheckFailed as exc:
        print(f"{prog}: check failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
