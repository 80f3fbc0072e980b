"""The examples in README.md and docs/*.md run as written.

Every shell command in a ```bash, ```sh or ```console block that runs flopgraph
(``flopgraph ...``, ``.venv/bin/flopgraph ...``, ``python -m flopgraph ...``) is
run, in-process through ``flopgraph.cli.main`` (what the console script calls), in
a fresh folder per document, and must exit as documented: 0, or the status a
console block shows after ``$ echo $?``, or a trailing ``# exits N`` comment.
``python -c CODE`` lines are exec'd. A ```python block whose first line names a
file (``# mynet.py``) is written to that folder, as the reader would save it;
every other ```python block is exec'd, the blocks of one document in order in one
namespace (a session). A block that cannot run (a placeholder such as ``model``,
a model too large for a test) has ``<!-- not-run: reason -->`` on the line above
it; there are few, each with its reason.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from flopgraph.cli import main
from flopgraph.handlers import DEFAULT

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELLS = ("bash", "sh", "console")
MAX_NOT_RUN = 15
"""Blocks marked not-run, over all documents: a new one needs its reason and this cap
raised on purpose."""
OPTIONAL = ("torchvision", "transformers", "timm")
"""Libraries flopgraph does not need: a document using one is skipped without it."""
_NOT_RUN = re.compile(r"<!--\s*not-run:\s*(.*?)\s*-->")
_FILE = re.compile(r"#\s*([\w./-]+\.py)\s*$")
_EXITS = re.compile(r"#.*\bexits? (\d+)\b")


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int
    lang: str
    text: str
    not_run: str | None
    """The reason given by a ``<!-- not-run: ... -->`` marker just above, if any."""

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def blocks(doc: Path) -> list[Block]:
    """The fenced code blocks of ``doc``, with their language and marker."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    out, i = [], 0
    while i < len(lines):
        if not lines[i].startswith("```"):
            i += 1
            continue
        lang, start = lines[i][3:].strip(), i
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        above = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        marker = _NOT_RUN.search(above)
        text = "\n".join(lines[start + 1 : end])
        out.append(Block(doc, start + 1, lang, text, marker.group(1) if marker else None))
        i = end + 1
    return out


@dataclass(frozen=True)
class Command:
    argv: list[str]
    env: dict[str, str]
    stdout: str | None
    """The file ``> FILE`` sends the output to."""
    exit: int
    line: str


def commands(block: Block) -> list[Command]:
    """The flopgraph commands (and ``python -c`` lines) of a shell block, each with the
    exit status the document gives it."""
    lines = block.text.splitlines()
    if block.lang == "console":  # `$ cmd` lines, then their output
        joined: list[tuple[str, int]] = []
        for k, line in enumerate(lines):
            if line.startswith("$ echo $?") and joined:
                joined[-1] = (joined[-1][0], int(lines[k + 1].strip()))
            elif line.startswith("$ "):
                joined.append((line[2:], 0))
    else:
        text = re.sub(r"\\\n\s*", " ", block.text)  # continuation lines
        joined = [(line, int(m.group(1)) if (m := _EXITS.search(line)) else 0)
                  for line in text.splitlines()]  # fmt: skip
    out = []
    for line, status in joined:
        words = shlex.split(line, comments=True)
        env = {}
        while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
            name, _, value = words.pop(0).partition("=")
            env[name] = value
        if words[:1] in (["flopgraph"], [".venv/bin/flopgraph"]):
            argv = words[1:]
        elif words[:3] == ["python", "-m", "flopgraph"]:
            argv = words[3:]
        elif words[:2] == ["python", "-c"]:
            argv = ["-c", *words[2:]]
        else:
            continue  # scripts/demo, sourcing the environment, other tools
        stdout = None
        if ">" in argv:
            k = argv.index(">")
            argv, stdout = argv[:k] + argv[k + 2 :], argv[k + 1]
        assert not {"|", "&&", ";", "<", "2>"} & set(argv), f"{block.where}: {line}"
        out.append(Command(argv, env, stdout, status, line))
    return out


def _runs(block: Block) -> bool:
    return block.not_run is None and (
        block.lang in SHELLS or (block.lang == "python" and not _FILE.match(block.text))
    )


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_examples_run_as_documented(doc, tmp_path, monkeypatch, capsys):
    found = blocks(doc)
    for name in OPTIONAL:
        if name in doc.read_text() and importlib.util.find_spec(name) is None:
            pytest.skip(f"{doc.name} uses {name}, which is not installed")
    monkeypatch.chdir(tmp_path)
    # a block may register a rule (@flopgraph.register): it lasts for this document only
    monkeypatch.setattr(DEFAULT, "_rules", dict(DEFAULT._rules))
    namespace: dict = {"__name__": "__docs__"}
    for block in found:
        if block.not_run is not None:
            continue
        if block.lang == "python" and (m := _FILE.match(block.text.splitlines()[0])):
            path = tmp_path / m.group(1)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block.text + "\n")
        elif block.lang == "python":
            exec(compile(block.text, block.where, "exec"), namespace)
        elif block.lang in SHELLS:
            for cmd in commands(block):
                _run(cmd, block, monkeypatch, capsys, namespace)


def _run(cmd: Command, block: Block, monkeypatch, capsys, namespace: dict) -> None:
    capsys.readouterr()
    with monkeypatch.context() as m:
        for name, value in cmd.env.items():
            m.setenv(name, value)
        if cmd.argv[:1] == ["-c"]:
            exec(compile(" ".join(cmd.argv[1:]), block.where, "exec"), dict(namespace))
            code = 0
        else:
            code = main(cmd.argv)
    out, err = capsys.readouterr()
    if cmd.stdout:
        Path(cmd.stdout).write_text(out)
    assert code == cmd.exit, f"{block.where}: `{cmd.line}` exited {code}, not {cmd.exit}: {err}"


def test_few_blocks_are_marked_not_run_and_each_says_why():
    marked = [b for doc in DOCS for b in blocks(doc) if b.not_run is not None]
    assert all(len(b.not_run or "") > 10 for b in marked), [b.where for b in marked]
    assert len(marked) <= MAX_NOT_RUN, [f"{b.where}: {b.not_run}" for b in marked]


def test_every_flopgraph_command_is_found():
    # the parser above finds what it must: a regression here would silently run nothing
    found = [c for doc in DOCS for b in blocks(doc) if _runs(b) for c in commands(b)]
    assert len(found) >= 20
    assert any(c.exit == 1 for c in found) and any(c.exit == 2 for c in found)
    assert any(c.stdout for c in found) and any(c.env for c in found)


def test_readme_enters_the_environment_before_the_command_line():
    # after `scripts/demo` (which makes .venv) a new shell has no `flopgraph` on PATH:
    # the README's command-line block enters the environment first
    readme = blocks(ROOT / "README.md")
    block = next(b for b in readme if b.lang in SHELLS and commands(b))
    first = next(line for line in block.text.splitlines() if line.strip())
    assert re.match(r"(\.|source) \.venv/bin/activate", first), first
