"""The documentation check: README.md and docs/*.md say only what exists.

    .venv/bin/pytest tests/test_docs.py -q

`problems(root)` lists, one line each:
  * every relative link or image of README.md and docs/*.md whose file is missing, or whose anchor is
    no heading of the linked Markdown file (GitHub's heading slugs);
  * every command line of a fenced console/bash block of README.md and docs/*.md that does not start
    with a command that exists: a console script of pyproject.toml, `python -m` of a module of the repository (also
    further in the line, e.g. after horovodrun), a target of the Makefile, a script of the
    repository, or one of STANDARD_TOOLS;
  * every `$ SCRIPT ... --help` console block of docs/*.md that differs from the real --help output
    (run with COLUMNS=100, so that argparse wraps as the block shows).
The tests point it at a temporary copy of the repository to show that a planted fault is found.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Commands a README may start a line with that are not the project's: kept explicit, so that a typo
# of one of the project's commands is never taken for a tool.
STANDARD_TOOLS = frozenset({
    "cd", "cat", "git", "source", "export", "watch", "ls", "sudo", "apt-get", "nvidia-smi", "ssh",
    "sbatch", "srun", "squeue", "scancel", "scontrol", "sinfo", "sacct", "horovodrun", "pytest"})
MODULES_NOT_OURS = frozenset({"pytest"})
COMMAND_FENCES = frozenset({"console", "bash", "sh", "shell"})
HELP_COLUMNS = "100"
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([\w+-]*)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(\S+)")
INLINE_CODE = re.compile(r"(`+).*?\1")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
SEPARATORS = frozenset({"&&", "||", ";", "|", "&"})


def doc_files(root: Path) -> list[Path]:
    """README.md and the guides."""
    readme = [root / "README.md"] if (root / "README.md").is_file() else []
    return readme + guides(root)


def guides(root: Path) -> list[Path]:
    return sorted((root / "docs").glob("*.md"))


def split_fences(text: str) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """The lines outside fenced blocks (blanked inside them, so line numbers hold) and the blocks."""
    prose: list[str] = []
    blocks: list[tuple[str, list[str]]] = []
    fence: str | None = None
    info = ""
    body: list[str] = []
    for line in text.splitlines():
        match = FENCE.match(line)
        if fence is None and match:
            fence, info, body = match.group(1), match.group(2).lower(), []
            prose.append("")
        elif fence is not None and line.strip().startswith(fence[0] * len(fence)) \
                and not line.strip().strip(fence[0]):
            blocks.append((info, body))
            fence = None
            prose.append("")
        elif fence is not None:
            body.append(line)
            prose.append("")
        else:
            prose.append(line)
    return prose, blocks


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: link text kept, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    for line in split_fences(path.read_text())[0]:
        match = HEADING.match(line)
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            if count:
                seen.setdefault(f"{base}-{count}", 1)
    return set(seen)


def link_targets(path: Path) -> list[tuple[int, str]]:
    targets = []
    for number, line in enumerate(split_fences(path.read_text())[0], 1):
        line = INLINE_CODE.sub("", line)
        targets += [(number, target) for target in LINK.findall(line)]
        reference = REFERENCE.match(line)
        if reference:
            targets.append((number, reference.group(1)))
    return targets


def link_problems(root: Path) -> list[str]:
    problems = []
    for doc in doc_files(root):
        where = doc.relative_to(root)
        for number, target in link_targets(doc):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                continue  # http(s), mailto: nothing on this machine to resolve them against
            file_part, _, anchor = target.partition("#")
            linked = Path(os.path.normpath(doc.parent / file_part)) if file_part else doc
            if not linked.exists() or not linked.is_relative_to(root):
                problems.append(f"{where}:{number}: link {target}: {file_part} does not exist; fix the path")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                problems.append(f"{where}:{number}: link {target}: {linked.relative_to(root)} has no "
                                f"heading #{anchor}; link a heading it has")
    return problems


def console_scripts(root: Path) -> dict[str, str]:
    with open(root / "pyproject.toml", "rb") as file:
        return tomllib.load(file)["project"]["scripts"]


def make_targets(root: Path) -> set[str]:
    return set(re.findall(r"^([A-Za-z0-9_.-]+):", (root / "Makefile").read_text(), re.MULTILINE))


def command_lines(info: str, body: list[str]) -> list[str]:
    """A console block's `$ ` lines, a bash block's lines; continuation lines left out."""
    lines, continued = [], False
    for line in body:
        text = line.strip()
        is_command = text.startswith("$ ") if info == "console" else bool(text) and not text.startswith("#")
        if is_command and not continued:
            lines.append(text.removeprefix("$ ") if info == "console" else text)
        continued = (is_command or continued) and text.endswith("\\")
    return lines


def tokens(line: str) -> list[str]:
    lexer = shlex.shlex(line.rstrip("\\"), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    return list(lexer)


def module_exists(root: Path, module: str) -> bool:
    path = root.joinpath(*module.split("."))
    return module in MODULES_NOT_OURS or path.with_suffix(".py").is_file() \
        or (path / "__init__.py").is_file() or (path / "__main__.py").is_file()


def is_python(word: str) -> bool:
    return re.fullmatch(r"(.*/)?python3?(\.\d+)?", word) is not None


def segment_problem(root: Path, words: list[str]) -> str | None:
    while words and (ASSIGNMENT.match(words[0]) or words[0] in ("sudo", "time")):
        words = words[1:]
    if not words:
        return None
    command = words[0].removeprefix(".venv/bin/")
    if command in console_scripts(root) or command in STANDARD_TOOLS or is_python(command):
        return None
    if command == "make":
        missing = [w for w in words[1:] if not w.startswith("-") and not ASSIGNMENT.match(w)
                   and w not in make_targets(root)]
        return f"make {' '.join(missing)}: no such target in the Makefile" if missing else None
    if "/" in command and (root / os.path.normpath(command)).is_file():
        return None
    return f"{command}: not a console script, make target, script of the repository or standard tool"


def line_problems(root: Path, line: str) -> list[str]:
    try:
        words = tokens(line)
    except ValueError as exc:
        return [f"cannot parse ({exc})"]
    problems: list[str | None] = []
    segment: list[str] = []
    for word in [*words, ";"]:
        if word in SEPARATORS:
            problems.append(segment_problem(root, segment))
            segment = []
        else:
            segment.append(word)
    problems += [f"python -m {module}: no such module in the repository"
                 for python, option, module in zip(words, words[1:], words[2:])
                 if is_python(python) and option == "-m" and not module_exists(root, module)]
    return [problem for problem in problems if problem]


def command_problems(root: Path) -> list[str]:
    problems = []
    for doc in doc_files(root):
        for info, body in split_fences(doc.read_text())[1]:
            if info in COMMAND_FENCES:
                problems += [f"{doc.relative_to(root)}: `{line}`: {problem}"
                             for line in command_lines(info, body) for problem in line_problems(root, line)]
    return problems


def help_blocks(root: Path) -> list[tuple[Path, list[str], list[str]]]:
    """(guide, argv, the lines shown) of every console block that starts with `$ SCRIPT ... --help`."""
    scripts, found = console_scripts(root), []
    for guide in guides(root):
        for info, body in split_fences(guide.read_text())[1]:
            if info == "console" and body and body[0].startswith("$ "):
                argv = body[0][2:].split()
                if argv[0] in scripts and argv[-1] == "--help":
                    found.append((guide, argv, body[1:]))
    return found


def real_help(root: Path, argv: list[str]) -> list[str]:
    module, _, function = console_scripts(root)[argv[0]].partition(":")
    code = f"import sys; sys.argv[0] = {argv[0]!r}; from {module} import {function}; sys.exit({function}())"
    env = dict(os.environ, COLUMNS=HELP_COLUMNS, PYTHONPATH=str(root), TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", code, *argv[1:]], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)
    return proc.stdout.splitlines()


def help_problems(root: Path) -> list[str]:
    problems = []
    for guide, argv, shown in help_blocks(root):
        real = [line.rstrip() for line in real_help(root, argv)]
        shown = [line.rstrip() for line in shown]
        if real != shown:
            first = next((i for i, (a, b) in enumerate(zip(real, shown)) if a != b), min(len(real), len(shown)))
            problems.append(f"{guide.relative_to(root)}: `{' '.join(argv)}` differs from the real output at its line "
                            f"{first + 1}: paste the output of `COLUMNS={HELP_COLUMNS} {' '.join(argv)}`")
    return problems


def problems(root: Path) -> list[str]:
    return link_problems(root) + command_problems(root) + help_problems(root)


def copy_of_docs(root: Path, into: Path) -> Path:
    """A repository whose README.md and docs/ are copies (to plant faults in) and the rest links."""
    for entry in root.iterdir():
        if entry.name in ("docs", ".git"):
            continue
        if entry.name != "README.md":
            (into / entry.name).symlink_to(entry)
    shutil.copytree(root / "docs", into / "docs")
    shutil.copy(root / "README.md", into / "README.md")
    return into


def test_the_readme_and_the_guides_resolve_and_show_only_real_commands():
    assert problems(ROOT) == []


def test_the_guides_show_a_help_block_of_every_console_script():
    shown = {argv[0] for _, argv, _ in help_blocks(ROOT)}
    assert shown == set(console_scripts(ROOT))


def test_a_broken_link_or_anchor_planted_in_a_copy_fails_the_check(tmp_path):
    copy = copy_of_docs(ROOT, tmp_path)
    assert link_problems(copy) == []
    with open(copy / "README.md", "a") as readme:
        readme.write("\nSee [the guide](docs/no-such-guide.md) and [a section](#no-such-heading).\n")
    with open(copy / "docs" / "training.md", "a") as guide:
        guide.write("\n[numbers](measurements.md#no-such-table)\n")
    found = link_problems(copy)
    assert len(found) == 3, found
    assert "docs/no-such-guide.md does not exist" in found[0]
    assert "has no heading #no-such-heading" in found[1]
    assert "docs/measurements.md has no heading #no-such-table" in found[2]


def test_a_command_that_does_not_exist_planted_in_a_copy_fails_the_check(tmp_path):
    copy = copy_of_docs(ROOT, tmp_path)
    with open(copy / "README.md", "a") as readme:
        readme.write("\n```console\n$ alexnet-trian --epochs 1\n$ horovodrun -np 2 python -m alexnet.trian\n"
                     "$ make tests\n$ scripts/no-such.sh\n```\n")
    found = command_problems(copy)
    assert [problem.split("`: ")[1] for problem in found] == [
        "alexnet-trian: not a console script, make target, script of the repository or standard tool",
        "python -m alexnet.trian: no such module in the repository",
        "make tests: no such target in the Makefile",
        "scripts/no-such.sh: not a console script, make target, script of the repository or standard tool"]


def test_a_help_block_that_differs_from_the_real_help_fails_the_check(tmp_path):
    copy = copy_of_docs(ROOT, tmp_path)
    already = help_problems(copy)  # a drift in the tree is the first test's failure, not this one's
    guide, argv, shown = next(block for block in help_blocks(copy)
                              if not any(f"`{' '.join(block[1])}` differs" in problem for problem in already))
    block = "\n".join(shown)
    text = guide.read_text()
    assert text.count(block) == 1
    guide.write_text(text.replace(block, block + " (an option since removed)"))
    assert [problem for problem in help_problems(copy) if f"`{' '.join(argv)}` differs" in problem]


def test_commands_are_read_from_console_prompts_and_bash_lines_without_continuations():
    assert command_lines("console", ["$ bench peak \\", "    --rounds 2", "output", "$ make demo"]) == \
        ["bench peak \\", "make demo"]
    assert command_lines("bash", ["# a comment", "slurm-submit train \\", "  -- --epochs 1", "", "make test"]) == \
        ["slurm-submit train \\", "make test"]


def test_slugs_are_githubs():
    assert slug("Training throughput: the tutorial's way vs ours, three ways") == \
        "training-throughput-the-tutorials-way-vs-ours-three-ways"
    assert slug("Pipelines: train -> export -> bench in one command") == \
        "pipelines-train---export---bench-in-one-command"
    assert slug("Export to ONNX (`export/`)") == "export-to-onnx-export"
