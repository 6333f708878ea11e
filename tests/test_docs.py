"""The docs hold together: a README short enough to read, every docs page reachable from it, every relative link
pointing at a file (and a heading, where it names one), and the README's two commands the ones CI runs. Fast: no
model is trained here; `test_examples.py` runs the docs' Python blocks (slow)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_README_LINES = 250
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _pages() -> list[Path]:
    """Every Markdown page of the docs, the README and the other READMEs users read."""
    return [README, ROOT / "CHANGELOG.md", ROOT / "recipes" / "README.md", ROOT / "model_cards" / "README.md",
            *sorted((ROOT / "docs").rglob("*.md"))]


def _prose(text: str) -> str:
    return FENCE.sub("", text)  # links in code blocks are code, not links


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    heading = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", heading).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    return {_slug(line.lstrip("#")) for line in _prose(page.read_text()).splitlines() if line.startswith("#")}


def _links(page: Path) -> list[tuple[str, Path, str]]:
    """(as written, target path, anchor) of every relative link of a page."""
    found = []
    for target in LINK.findall(_prose(page.read_text())):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        found.append((target, (page.parent / path).resolve() if path else page, anchor))
    return found


def _opened(target: Path) -> Path | None:
    """The page a link shows: a Markdown file, or the README.md of a folder."""
    if target.is_dir():
        target = target / "README.md"
    return target if target.suffix == ".md" and target.is_file() else None


@pytest.mark.parametrize("page", _pages(), ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_points_at_a_file_and_heading(page):
    for written, target, anchor in _links(page):
        assert target.exists(), f"{page.relative_to(ROOT)}: {written} points at nothing"
        if anchor:
            shown = _opened(target)
            assert shown is not None, f"{page.relative_to(ROOT)}: {written} names a heading of a file that has none"
            assert anchor in _anchors(shown), f"{page.relative_to(ROOT)}: {written}: no heading '{anchor}' there"


def test_every_docs_page_is_reachable_from_the_readme():
    seen, todo = set(), [README]
    while todo:
        page = todo.pop()
        if page in seen:
            continue
        seen.add(page)
        todo += [shown for _, target, _ in _links(page) if (shown := _opened(target)) is not None]
    unreachable = [str(page.relative_to(ROOT)) for page in sorted((ROOT / "docs").rglob("*.md")) if page not in seen]
    assert not unreachable, f"docs pages no link leads to from README.md: {unreachable}"
    assert {ROOT / "CHANGELOG.md", ROOT / "recipes" / "README.md", ROOT / "model_cards" / "README.md"} <= seen


def test_the_readme_is_short_and_puts_the_newcomers_path_first():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines: move the detail to docs/"
    headings = [line[3:].lower() for line in lines if line.startswith("## ")]
    first = headings[:8]  # a screenful of the outline
    for topic in ("install", "quick start", "training script", "hub", "results"):
        assert any(topic in heading for heading in first), (topic, headings)
    assert "citation" in headings and "licence" in headings


def test_the_readme_test_command_is_the_one_ci_runs():
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("[ -d .venv ]")]
    assert len(ci) == 1 and ci[0] in README.read_text().splitlines()
    demo = ci[0].split(" && .venv/bin/python -m pytest")[0] + " && .venv/bin/hf-ingrain demo"
    assert demo in README.read_text().splitlines()


def test_the_link_check_finds_what_it_is_for(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other page\n\n## A `code` heading, with punctuation!\n")
    page.write_text("[a](other.md#a-code-heading-with-punctuation) [b](missing.md) ![c](other.md)\n"
                    "[d](https://example.org) [e](#top)\n```\n[f](in-code.md)\n```\n")
    links = {written: target for written, target, _ in _links(page)}
    assert set(links) == {"other.md#a-code-heading-with-punctuation", "missing.md", "other.md", "#top"}
    assert not links["missing.md"].exists()
    assert "a-code-heading-with-punctuation" in _anchors(tmp_path / "other.md")
