"""The repository explains itself: nothing it tracks points outside it, and every pointer into docs/ lands.

Comments and docstrings cite ``docs/<page>.md#<section>`` for the reasoning behind the code. A person who clones the
repository must be able to follow every such pointer, so this test fails when a tracked text file

* names a briefing file that is not part of the repository (the two upper-case ``.md`` notes below),
* uses a relative path (dot-dot segments) that climbs out of the repository (relative to the page in Markdown
  files, where it is a link; relative to the repository root elsewhere, where commands and messages run from), or
  an absolute path into the directory that holds the checkout (a sibling of the repository where it was written),
* builds such a path in Python (``REPO_ROOT.parent``, or more ``.parent`` levels than the file is deep),
* or points at a docs page, or a section of one, that does not exist.

Every tracked file is read (``git ls-files``); binary files (a NUL byte near the start) are skipped.
"""

from __future__ import annotations

import functools
import re
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: Notes that lived beside the repository while it was written; neither is part of it. Spelled in pieces so that
#: this file does not match its own pattern.
OUTSIDE_NOTES = re.compile(r"\b(?:" + "DES" + "IGN|PA" + r"PER)\.md\b")
#: Dot-dot segments not preceded by a dot or a word character (an ellipsis and a slash in prose are no path).
RELATIVE = re.compile(r"(?<![.\w])((?:\.\./)+[\w./-]*)")
#: A repository-root variable's parent: outside the repository by definition.
ROOT_PARENT = re.compile(r"\b\w*(?:ROOT|REPO)\w*\.parent\b")
#: ``Path(__file__).resolve()`` followed by ``.parents[k]`` or a chain of ``.parent``.
FILE_PARENTS = re.compile(r"Path\(__file__\)(?:\.resolve\(\))?(?:\.parents\[(\d+)\]|((?:\.parent)+))")
#: A pointer into docs/ from anywhere: ``docs/<page>.md`` or ``docs/<page>.md#<section>``.
DOCS_POINTER = re.compile(r"(?<![\w/.-])docs/([\w./-]+?\.md)(?:#([\w-]+))?")
#: A Markdown link target inside docs/: ``](page.md#section)``, ``](#section)``.
MD_LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")


def _tracked_files() -> list[Path]:
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, timeout=60
        ).stdout.decode()
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"not a git checkout ({exc}); the tracked files cannot be listed")
    return [REPO / name for name in out.split("\0") if name and (REPO / name).is_file()]


def _text(path: Path) -> str | None:
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None
    return data.decode("utf-8", errors="replace")


@pytest.fixture(scope="module")
def texts() -> dict[Path, str]:
    out = {}
    for path in _tracked_files():
        text = _text(path)
        if text is not None:
            out[path] = text
    return out


def _lines(text: str, pattern: re.Pattern[str]) -> Iterator[tuple[int, re.Match[str]]]:
    for number, line in enumerate(text.splitlines(), start=1):
        for match in pattern.finditer(line):
            yield number, match


def _rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def _inside(path: Path) -> bool:
    return path.resolve().is_relative_to(REPO)


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@functools.cache
def anchors(page: Path) -> set[str]:
    """Every heading anchor of a Markdown page, with GitHub's -1, -2 suffixes for repeated headings."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    in_code = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        match = None if in_code else HEADING.match(line)
        if match:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            out.add(base if count == 0 else f"{base}-{count}")
    return out


def test_slugs_follow_github() -> None:
    assert slug("Flow control and policy lag") == "flow-control-and-policy-lag"
    assert slug("The `tick`: one counter, kept mod P!") == "the-tick-one-counter-kept-mod-p"
    assert slug("Parts and who imports whom") == "parts-and-who-imports-whom"
    assert slug("The `state_spec` contract") == "the-state_spec-contract"


def test_no_file_names_the_briefing_notes(texts: dict[Path, str]) -> None:
    hits = [f"{_rel(path)}:{n}: {m.group(0)}" for path, text in texts.items() for n, m in _lines(text, OUTSIDE_NOTES)]
    assert not hits, "files point at notes outside the repository (point at docs/ instead):\n" + "\n".join(hits)


# The one allowed exception: CI's entry point starts a Docker engine through the CI machine's own engine script,
# which lies beside the checkout there, and only when that script exists (without it the Docker tests skip). It is
# machine setup, not something the project's code, tests or docs rely on.
CI_MACHINE_HOOKS = {(".ci/run", "/".join(("..", "shared", "docker", "engine.sh")))}  # joined: no match on this line


def test_no_relative_path_climbs_out_of_the_repository(texts: dict[Path, str]) -> None:
    hits = [
        f"{_rel(path)}:{n}: {m.group(1)}"
        for path, text in texts.items()
        for n, m in _lines(text, RELATIVE)
        if not _inside((path.parent if path.suffix == ".md" else REPO) / m.group(1))
        and (_rel(path), m.group(1)) not in CI_MACHINE_HOOKS
    ]
    assert not hits, "relative paths leading outside the repository:\n" + "\n".join(hits)


def test_no_absolute_path_into_the_checkouts_neighbourhood(texts: dict[Path, str]) -> None:
    """A path such as <parent of the checkout>/<sibling>/... only exists on the machine that wrote it."""
    parent = REPO.parents[0]
    if parent == parent.parent:  # the checkout sits at the file-system root: no neighbourhood to leak
        pytest.skip("the checkout has no parent directory")
    if parent.resolve() in {Path(tempfile.gettempdir()).resolve(), Path("/tmp"), Path("/var/tmp")}:
        # e.g. /tmp/<clone>: the neighbourhood is the system's temporary directory, which the images' build steps
        # use on purpose (/tmp/requirements.txt inside a container); it says nothing about this machine
        pytest.skip(f"the checkout sits directly in the temporary directory {parent}")
    prefix = re.compile(re.escape(parent.as_posix().rstrip("/") + "/") + r"[\w.-]+")
    hits = [
        f"{_rel(path)}:{n}: {m.group(0)}"
        for path, text in texts.items()
        for n, m in _lines(text, prefix)
        if not _inside(Path(m.group(0)))
    ]
    assert not hits, "absolute paths outside the repository:\n" + "\n".join(hits)


def test_python_never_builds_a_path_outside_the_repository(texts: dict[Path, str]) -> None:
    hits = []
    for path, text in texts.items():
        if path.suffix != ".py" or path == Path(__file__).resolve():  # this file spells out the patterns
            continue
        depth = len(path.relative_to(REPO).parts) - 1  # directories between the repository root and the file
        for n, m in _lines(text, ROOT_PARENT):
            hits.append(f"{_rel(path)}:{n}: {m.group(0)}")
        for n, m in _lines(text, FILE_PARENTS):
            levels = int(m.group(1)) + 1 if m.group(1) is not None else m.group(2).count(".parent")
            if levels > depth + 1:
                hits.append(f"{_rel(path)}:{n}: {m.group(0)} climbs {levels} levels from a file {depth} deep")
    assert not hits, "paths built outside the repository:\n" + "\n".join(hits)


def test_every_pointer_into_docs_lands(texts: dict[Path, str]) -> None:
    pointers = 0
    hits = []
    for path, text in texts.items():
        for n, m in _lines(text, DOCS_POINTER):
            pointers += 1
            page = REPO / "docs" / m.group(1)
            if not page.is_file():
                hits.append(f"{_rel(path)}:{n}: docs/{m.group(1)} does not exist")
            elif m.group(2) and m.group(2) not in anchors(page):
                hits.append(f"{_rel(path)}:{n}: docs/{m.group(1)} has no section #{m.group(2)}")
    assert pointers, "no pointer into docs/ found at all: the pattern or the tree is broken"
    assert not hits, "pointers into docs/ that do not land:\n" + "\n".join(hits)


def test_links_between_docs_pages_land() -> None:
    pages = sorted((REPO / "docs").glob("*.md"))
    assert pages, "docs/ holds no pages"
    hits = []
    for page in pages:
        for n, m in _lines(page.read_text(encoding="utf-8"), MD_LINK):
            target = m.group(1)
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            name, _, anchor = target.partition("#")
            dest = (page.parent / name) if name else page
            if not _inside(dest) or not dest.exists():
                hits.append(f"{_rel(page)}:{n}: {target} does not exist in the repository")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                hits.append(f"{_rel(page)}:{n}: {target}: no such section")
    assert not hits, "broken links in docs/:\n" + "\n".join(hits)
