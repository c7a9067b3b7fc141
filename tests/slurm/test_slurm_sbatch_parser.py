"""What the real sbatch reads from the rendered `#SBATCH` lines: each value as its own option's value, never
an option of its own.

sbatch reads `#SBATCH` lines with its own tokenizer, not the shell's (a backslash escapes the next
character even inside single quotes; an unquoted `#` starts a comment). `sbatch --test-only -vvvv
SCRIPT` on the local one-node SLURM (tests/slurm/conftest.py) lists the options it found ("defined
options") and queues nothing. Every value below either is refused in one line naming its option, or
is read back by sbatch exactly as given.

    .venv/bin/pytest tests/slurm/test_slurm_sbatch_parser.py
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from slurm.render import Resources, TrainJob, render
from toolkit.cli import UsageError

# The reported value: in bash's quoting it stays one word, but sbatch's backslash ends the quotes and finds an option.
INJECTION = r"""x\'" --export=ALL,LD_PRELOAD=/tmp/x.so #"""
VARIANTS = [
    "node_1.a-b",
    INJECTION,
    "x\\' --export=ALL,LD_PRELOAD=/tmp/x.so '",
    "x\\",
    "x\\ --export=ALL",
    "x' --export=ALL,LD_PRELOAD=/tmp/x.so '",
    'x" --export=ALL,LD_PRELOAD=/tmp/x.so "',
    "x --export=ALL,LD_PRELOAD=/tmp/x.so",
    "x #--export=ALL",
    "x\t--export=ALL",
    "x\v--export=ALL",
    "x\u00a0--export=ALL",
    "x\n#SBATCH --export=ALL",
    "'\"'\"'",
    "$(touch PWNED) `touch PWNED`; rm -rf ~",
    "${IFS}$HOME *",
    "--export=ALL",
    "-- --x",
    "{{header}}",
]
WORKDIR = "/w"
# The field, its option, and the value sbatch should read for a given text (None: not on an #SBATCH line).
FIELDS = {
    "job_name": ("--job-name", "job-name", lambda text: text),
    "partition": ("--partition", "partition", lambda text: text),
    "account": ("--account", "account", lambda text: text),
    "nodelist": ("--nodelist", "nodelist", lambda text: text),
    # sbatch makes a relative --chdir absolute from where it runs (here, like this test).
    "workdir": ("--workdir", "chdir", lambda text: os.path.join(os.getcwd(), text)),
    "log_dir": ("--log-dir", "output", lambda text: f"{WORKDIR}/{text}/train-%j.out"),
    "venv": ("--venv", None, None),
}
_DEFINED = re.compile(r"^sbatch: (\S+)\s+: (.*)$")


def sbatch_options(cluster, script: str, tmp_path: Path) -> dict[str, str]:
    """The options sbatch found in the script (its -vvvv listing of "defined options"), queueing nothing."""
    path = tmp_path / "job.sbatch"
    path.write_text(script)
    proc = cluster.run("sbatch", "--test-only", "-vvvv", str(path), check=False)
    listing = proc.stderr.split("sbatch: defined options\n", 1)[1].split("sbatch: end of defined options", 1)[0]
    found = dict(m.groups() for m in map(_DEFINED.match, listing.splitlines()) if m)
    assert found.pop("test-only") == "set" and found.pop("verbose") == "4", proc.stderr
    return found


@pytest.mark.slurm
@pytest.mark.parametrize("field", FIELDS)
def test_no_value_yields_an_sbatch_option_of_its_own(slurm_cluster, tmp_path, field):
    flag, option, expected = FIELDS[field]
    read = 0
    for text in VARIANTS:
        try:
            job = TrainJob(Resources(**{"job_name": "job", "workdir": WORKDIR, field: text}), ["--output-dir", "run"])
        except UsageError as refused:
            assert str(refused).startswith(f"{flag} ") and "\n" not in str(refused)
            continue
        script = render(job)
        rendered = [m.group(1) for m in re.finditer(r"^#SBATCH --([\w-]+)", script, re.MULTILINE)]
        found = sbatch_options(slurm_cluster, script, tmp_path)
        assert sorted(found) == sorted(rendered), (text, found)
        if option is not None:
            assert found[option] == expected(text), text
        read += 1
    assert read, "the plain value was refused too"


@pytest.mark.parametrize("line", ["node1' --export=ALL #", "node1 --export=ALL", "node[1-2]\\", "node1;node2"])
def test_a_nodelist_file_line_that_is_no_host_list_is_refused(tmp_path, line):
    hosts = tmp_path / "hosts"
    hosts.write_text(f"node3\n{line}\n")
    proc = subprocess.run([sys.executable, "-m", "slurm.submit", "train", "--nodes", "3", "--nodelist", str(hosts),
                           "--dry-run"], capture_output=True, text=True)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == (f"slurm-submit: error: --nodelist file {hosts}: line {line!r} is not a SLURM host list: "
                           "write host names of letters, digits, '_', '.' and '-', each with optional [ranges], "
                           "comma-separated, like gpu[01-02],gpu07\n")
