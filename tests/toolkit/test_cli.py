"""The shared command-line contract: one line and exit 2 for bad input, exit 1 for a failed check."""
from __future__ import annotations

import pytest

from toolkit import cli


def _run(capsys, main, argv=()):
    code = cli.run("prog", main, list(argv))
    return code, capsys.readouterr()


def test_usage_error_is_one_line_and_exit_2(capsys):
    def main(argv):
        raise cli.UsageError("--batch 0 must be >= 1: pass a positive size")
    code, out = _run(capsys, main)
    assert code == cli.USAGE_EXIT == 2
    assert out.out == "" and out.err == "prog: error: --batch 0 must be >= 1: pass a positive size\n"


def test_failed_check_is_exit_1_and_interrupt_130(capsys):
    def failed(argv):
        raise cli.CheckFailed("max |diff| 0.3 over the tolerance 1e-4")
    code, out = _run(capsys, failed)
    assert code == 1 and out.err == "prog: check failed: max |diff| 0.3 over the tolerance 1e-4\n"

    def interrupted(argv):
        raise KeyboardInterrupt
    code, out = _run(capsys, interrupted)
    assert code == 130 and out.err == "prog: interrupted\n"


def test_other_exceptions_are_bugs_and_keep_their_traceback():
    def broken(argv):
        raise ZeroDivisionError
    with pytest.raises(ZeroDivisionError):
        cli.run("prog", broken, [])


def test_argparse_errors_become_one_line(capsys):
    def main(argv):
        parser = cli.ArgumentParser(prog="prog")
        parser.add_argument("--mode", choices=["a", "b"])
        parser.parse_args(argv)
    code, out = _run(capsys, main, ["--mode", "c"])
    assert code == 2 and out.err.count("\n") == 1
    assert out.err.startswith("prog: error: argument --mode: invalid choice: 'c'") and "see `prog --help`" in out.err
    code, out = _run(capsys, main, ["--nope"])
    assert code == 2 and "unrecognized arguments: --nope" in out.err and out.err.count("\n") == 1
