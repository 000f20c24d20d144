"""The documentation's links lead somewhere, and README.md stays a short page.

Guards README.md and docs/*.md against links that a move of a file or a renamed heading broke: every
relative markdown link and image (`[text](path)`, `[text](path#anchor)`, `![alt](path)`, `[text](#anchor)`)
must name a file or folder that exists, relative to the page that links it, and an `#anchor` must be one
that a heading of the target page produces under GitHub's rules (lowercase; punctuation other than `-` and
`_` dropped; spaces turned into `-`; a repeated heading gets `-1`, `-2`, ...). Links to http(s) and
mailto addresses are not checked. README.md is at most 220 lines: everything longer belongs in docs/.
Needs no torch and reads only text files.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 220

# [text](target) or ![alt](target), with an optional "title"; text may hold `code` and nested ![img](...).
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_FENCE = re.compile(r"^(```|~~~)")
_EXTERNAL = ("http://", "https://", "mailto:")


def _prose(text: str) -> str:
    """The page without fenced code blocks and inline code, where brackets are not links."""
    kept, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            kept.append(re.sub(r"`[^`]*`", "``", line))
    return "\n".join(kept)


def links(page: Path) -> list[str]:
    return _LINK.findall(_prose(page.read_text(encoding="utf-8")))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text."""
    text = re.sub(r"<[^>]+>", "", heading)                 # inline HTML
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links keep their text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)                   # punctuation, except - and _
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    fenced = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line.strip()):
            fenced = not fenced
            continue
        match = None if fenced else re.match(r"^#{1,6}\s+(.+?)\s*#*\s*$", line)
        if match:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(page: Path) -> list[str]:
    problems = []
    for target in links(page):
        if target.startswith(_EXTERNAL):
            continue
        path, _, anchor = target.partition("#")
        destination = (page.parent / path).resolve() if path else page
        if not destination.exists():
            problems.append(f"{target}: {destination.relative_to(ROOT) if destination.is_relative_to(ROOT) else destination} does not exist")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            problems.append(f"{target}: no heading in {destination.relative_to(ROOT)} makes #{anchor}")
    return problems


def test_the_pages_exist_and_link_to_each_other():
    assert (ROOT / "README.md").is_file()
    assert len(PAGES) > 1, "docs/*.md not found"
    readme_targets = {target.partition("#")[0] for target in links(ROOT / "README.md")}
    for page in PAGES[1:]:
        assert f"docs/{page.name}" in readme_targets, f"README.md does not link docs/{page.name}"


@pytest.mark.parametrize("page", PAGES, ids=[str(page.relative_to(ROOT)) for page in PAGES])
def test_every_relative_link_and_image_resolves(page):
    assert broken_links(page) == []


def test_readme_stays_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail into docs/ (at most {README_MAX_LINES})"


def test_slugs_follow_githubs_rules():
    assert slug("GPU check: SD1.5 size, the paper's settings") == "gpu-check-sd15-size-the-papers-settings"
    assert slug("Label efficiency: `hero-tui bench`") == "label-efficiency-hero-tui-bench"
    assert slug("Python 3.11 and 3.12") == "python-311-and-312"
    assert slug("What was tried for `hand`, `counting`") == "what-was-tried-for-hand-counting"
    assert slug("snake_case stays") == "snake_case-stays"
