"""Command-line conventions shared by every entry point of the toolkit.

Bad input is a `UsageError`: the command prints one line, `PROG: error: MESSAGE`, naming
the problem and the fix, and exits with status 2 (argparse's own convention), with no
traceback and no usage dump. A check the user asked for that does not hold is `CheckFailed`
(exit 1). `ArgumentParser` turns argparse's own errors into the same one line.

    def _main(argv) -> int: ...
    def main(argv=None) -> int:
        return cli.run("bench", _main, argv)
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import unicodedata
import warnings
from typing import Callable, NoReturn, Sequence

OK_EXIT = 0
CHECK_FAILED_EXIT = 1
USAGE_EXIT = 2
PREEMPTED_EXIT = 75     # EX_TEMPFAIL: stopped on a signal after writing a checkpoint; resume me
INTERRUPTED_EXIT = 130  # 128 + SIGINT, as shells report it


class UsageError(Exception):
    """Input the user can fix: reported as one line, exit status 2."""


class CheckFailed(Exception):
    """A check the user asked for did not hold (e.g. ONNX vs TF outputs): exit status 1."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are the toolkit's one-liners (no usage dump), exit 2 like argparse."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def visible(text: str, keep: str = "\n") -> str:
    """`text` with its control characters (ESC, BEL, CR, C1, ...) but those in `keep` written out as `\\x1b`:
    an ANSI or OSC sequence that came from a file cannot drive the terminal it is printed to."""
    return "".join(f"\\x{ord(c):02x}" if unicodedata.category(c) == "Cc" and c not in keep else c for c in text)


def short_error(exc: BaseException) -> str:
    """One line of a runtime's exception: onnxruntime's carry source paths and C++ signatures; keep the sentence
    after them."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "onnxruntime_src" in text and ") " in text:
        text = text.rsplit(") ", 1)[1]
    return re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text).strip()[:300]


def console(stderr: bool = False, **kwargs):
    """A rich console for the user: a pipe or log file gets wide tables rather than rich's
    80-column default, which would cut the right-hand columns off."""
    from rich.console import Console

    probe = Console(stderr=stderr, **kwargs)
    return probe if probe.is_terminal else Console(stderr=stderr, width=160, **kwargs)


def quiet_native_stderr() -> None:
    """Drop what native code writes straight to file descriptor 2 (TensorFlow's absl, oneDNN and CUDA lines, which
    TF_CPP_MIN_LOG_LEVEL cannot hide: the first print before TensorFlow reads it) and Python's warnings, while
    `sys.stderr` (the toolkit's messages, progress, tracebacks) stays where stderr was: a one-line error is then
    the last line. Call it before TensorFlow is imported; commands skip it with --verbose, which shows them."""
    sys.stderr.flush()
    terminal = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)
    sys.stderr = open(terminal, "w", buffering=1, encoding=sys.stderr.encoding, errors="backslashreplace")
    warnings.simplefilter("ignore")


def run(prog: str, main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run `main(argv)`, turning the toolkit's exceptions into one-line messages and exit codes."""
    try:
        return int(main(argv) or OK_EXIT)
    except UsageError as exc:
        print(f"{prog}: error: {visible(str(exc), keep='')}", file=sys.stderr)  # one line, whatever a file held
        return USAGE_EXIT
    except CheckFailed as exc:
        print(f"{prog}: check failed: {visible(str(exc), keep='')}", file=sys.stderr)
        return CHECK_FAILED_EXIT
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return INTERRUPTED_EXIT
