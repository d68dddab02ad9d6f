"""The README stays a short first read, opens with the two set-up commands, and every relative link in it and in
docs/ points at a file that exists (`mkdocs build --strict` checks the site's own links; the README is outside it)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# [text](target) and [text](target "title"); a target may carry a #fragment.
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _ci_test_command() -> str:
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    return next(line for line in lines if "python -m pytest" in line).removesuffix(" || rc=$?")


def test_readme_is_short():
    lines = README.read_text().splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines: move the detail to a docs/ page"


def test_readme_opens_with_its_title_and_the_two_setup_commands():
    lines = README.read_text().splitlines()
    assert lines[0] == "# decompose"
    fence = lines.index("```bash")
    assert all(not line.strip() for line in lines[1:fence]), "nothing between the title and the commands"
    run, test, close = lines[fence + 1 : fence + 4]
    assert close == "```"
    assert run.startswith('pip install "torch==') and " && decompose run " in run
    assert test == _ci_test_command(), ".ci/run must run the README's test command verbatim"


def _relative_links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)  # code blocks hold no links
    return [t for t in LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


@pytest.mark.parametrize("path", [README, *sorted((ROOT / "docs").glob("*.md"))], ids=lambda p: p.name)
def test_relative_links_point_at_files(path):
    broken = [t for t in _relative_links(path) if not (path.parent / t.split("#")[0]).exists()]
    assert not broken, f"{path.relative_to(ROOT)} links to missing files: {broken}"


def test_the_link_check_sees_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("[ok](page.md) [site](https://example.com) [gone](missing.md#part)\n```\n[no](fenced.md)\n```\n")
    assert _relative_links(page) == ["page.md", "missing.md#part"]
