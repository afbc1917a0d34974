"""The docs say what the code does: every docs/ file the code cites exists, every `accelsim`
command shown in README.md and docs/ names real sub-commands and options, and the README names
exactly the modules outside models/ that import torch."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from accelsim.cli import cli

ROOT = Path(__file__).resolve().parents[1]
CODE_DIRS = ("accelsim", "models", "traces", "analysis", "benchmarks", "tests")
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _code_files():
    for d in CODE_DIRS:
        for path in sorted((ROOT / d).rglob("*")):
            if path.suffix in (".py", ".toml") and "__pycache__" not in path.parts:
                yield path


def test_every_docs_path_cited_in_the_code_exists():
    cited = {}
    for path in _code_files():
        for ref in re.findall(r"(?<![\w/.-])docs/[\w./-]*\w", path.read_text(encoding="utf-8")):
            cited.setdefault(ref, path.relative_to(ROOT))
    assert cited, "no docs/ citation found: the scan is broken"
    missing = {ref: str(where) for ref, where in cited.items() if not (ROOT / ref).exists()}
    assert not missing, f"cited in the code but absent: {missing}"


def _commands():
    """(doc, line, argv) of each `accelsim ...` command in an indented block or a code span."""
    for doc in DOCS:
        lines = doc.read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines, 1):
            k = n
            while line.endswith("\\") and k < len(lines):  # a shell line continued
                line, k = line[:-1] + " " + lines[k].strip(), k + 1
            found = re.findall(r"`(accelsim [^`]+)`", line)
            if re.match(r"^(    |\t)\s*accelsim ", line):
                found.append(line.strip())
            for text in found:
                text = text.split(" #")[0].replace("...", "").strip()
                yield doc.name, n, shlex.split(text)[1:]


def _check(argv: list[str]) -> str | None:
    """None when argv walks click's tree through real commands with real options."""
    cmd: click.Command = cli
    i = 0
    while isinstance(cmd, click.Group) and i < len(argv) and not argv[i].startswith("-"):
        sub = cmd.commands.get(argv[i])
        if sub is None:
            return f"no command {argv[i]!r} in {cmd.name!r}"
        cmd, i = sub, i + 1
    options = {o for p in cmd.params if isinstance(p, click.Option) for o in p.opts + p.secondary_opts}
    options |= {"--help", "-h"}
    for word in argv[i:]:
        flag = word.strip("[](){}|,").split("=", 1)[0]
        if flag.startswith("-") and len(flag) > 1 and not re.fullmatch(r"-[\d.]+", flag) and flag not in options:
            return f"{cmd.name}: no option {flag}"
    return None


def test_every_accelsim_command_in_readme_and_docs_exists():
    commands = list(_commands())
    assert len(commands) > 20, "the README and docs show many commands: the scan is broken"
    bad = [f"{doc}:{n}: accelsim {' '.join(argv)}: {why}"
           for doc, n, argv in commands if (why := _check(argv))]
    assert not bad, "\n".join(bad)


def test_the_command_check_catches_a_wrong_flag_and_command():
    assert _check(["run", "--trace", "x", "--arch", "eie64"]) is None
    assert "no option --trase" in _check(["run", "--trase", "x"])
    assert "no command 'recrod'" in _check(["trace", "recrod"])


def test_readme_names_the_modules_that_import_torch():
    line = next(l for l in (ROOT / "README.md").read_text().splitlines() if "torch is imported" in l)
    named = set(re.findall(r"`((?:accelsim|traces|analysis)/\w+\.py)`", line))
    importing = set()
    for d in ("accelsim", "traces", "analysis"):
        for path in (ROOT / d).rglob("*.py"):
            if re.search(r"^\s*(import torch|from torch)\b", path.read_text(), re.M):
                importing.add(str(path.relative_to(ROOT)))
    assert not any(p.startswith("accelsim/") for p in importing), "the simulator never imports torch"
    assert named == importing


@pytest.mark.parametrize("doc", [d.name for d in DOCS])
def test_docs_cite_only_docs_that_exist(doc):
    text = next(d for d in DOCS if d.name == doc).read_text(encoding="utf-8")
    missing = [ref for ref in re.findall(r"(?<![\w/.-])docs/[\w./-]*\w", text) if not (ROOT / ref).exists()]
    assert not missing
