"""The documentation: README.md is the front door, docs/ holds the rest, and the map of the
code (docs/architecture.md) matches the tree.

Everything is read at test time (the pages and the package tree), so a module split, a
moved page or a renamed file fails here and says what to change in which page.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
ARCHITECTURE = DOCS / "architecture.md"
PACKAGE = ROOT / "audit"
SCENARIOS = "audit/scenarios/"
README_MAX_LINES = 150
# The fresh-machine commands, each on a line of its own: .ci/run and the workflows run them.
FRESH_MACHINE_COMMANDS = (
    "python3 -m pip install nox uv && python3 -m nox",
    "python3 -m pip install nox uv && python3 -m nox -s tests",
)
# Lab-notebook phrases: history belongs in commit messages, not in the documentation.
DIARY = ("this session's", "sessions back", "when issue", "last code", "before this session")

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.MULTILINE)
# A path into the package as the pages write it: `audit/run/runner.py`, `audit/run/pool/`.
PACKAGE_PATH = re.compile(r"(?<![\w./-])audit/(?:[A-Za-z_]\w*/)*(?:[A-Za-z_]\w*\.py)?(?![\w-])")


def pages() -> list[Path]:
    """README.md and every page under docs/."""
    return [README, *sorted(DOCS.rglob("*.md"))]


def text_of(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def prose(text: str) -> str:
    """The text without its fenced code blocks (a link shown in an example is no link)."""
    return FENCE.sub("", text)


def links(page: Path) -> list[str]:
    return LINK.findall(prose(text_of(page)))


def local_target(page: Path, target: str) -> tuple[Path, str] | None:
    """(file, fragment) a relative link points at; None for a URL or an in-page anchor."""
    if SCHEME.match(target) or target.startswith("#"):
        return None
    path, _, fragment = target.partition("#")
    path = path.split("?", 1)[0]
    return (page.parent / path).resolve(), fragment


def anchors(page: Path) -> set[str]:
    """The anchors GitHub makes of a markdown page's headings (`## Across cpu_capability`
    -> `across-cpu_capability`; a repeated heading gets -1, -2, ...)."""
    found: set[str] = set()
    for heading in HEADING.findall(prose(text_of(page))):
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
        slug = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
        candidate, number = slug, 0
        while candidate in found:
            number += 1
            candidate = f"{slug}-{number}"
        found.add(candidate)
    return found


def shown(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# --- links --------------------------------------------------------------------------------

def test_docs_has_pages() -> None:
    assert sorted(DOCS.glob("*.md")), "docs/ holds no pages"


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = {target[0] for target in (local_target(README, link) for link in links(README))
              if target is not None}
    missing = [shown(page) for page in sorted(DOCS.rglob("*.md")) if page.resolve() not in linked]
    assert not missing, f"README.md links to no {', '.join(missing)}: add a link to each"


def test_the_readme_links_the_published_report_and_changelog() -> None:
    linked = {target[0] for target in (local_target(README, link) for link in links(README))
              if target is not None}
    for report in ("reports/README.md", "reports/changelog.md"):
        assert (ROOT / report).resolve() in linked, f"README.md does not link {report}"


@pytest.mark.parametrize("page", pages(), ids=shown)
def test_every_relative_link_points_at_a_file_that_exists(page: Path) -> None:
    broken = []
    for link in links(page):
        target = local_target(page, link)
        if target is None:
            continue
        path, fragment = target
        if not path.exists():
            broken.append(f"{link} (no such file)")
        elif fragment and path.suffix == ".md" and fragment not in anchors(path):
            broken.append(f"{link} (no heading makes #{fragment})")
    assert not broken, f"{shown(page)}: broken links: " + "; ".join(broken)


# --- paths into the package ---------------------------------------------------------------

def package_paths(text: str) -> set[str]:
    """Every `audit/...py` file and `audit/.../` folder the text names."""
    return {path for path in PACKAGE_PATH.findall(text) if path.endswith((".py", "/"))}


@pytest.mark.parametrize("page", pages(), ids=shown)
def test_every_package_path_a_page_names_exists(page: Path) -> None:
    missing = sorted(path for path in package_paths(text_of(page))
                     if not (ROOT / path).exists()
                     or (path.endswith("/") and not (ROOT / path).is_dir()))
    assert not missing, (f"{shown(page)} names paths that are not in the tree: "
                         f"{', '.join(missing)}")


def is_scenario_family(module: Path) -> bool:
    """A module of audit/scenarios/ that registers built-in scenarios (`@scenario(...)`)."""
    return re.search(r"^@scenario\(", module.read_text(encoding="utf-8"), re.MULTILINE) is not None


def modules_of_the_package() -> list[str]:
    return sorted(shown(path) for path in PACKAGE.rglob("*.py")
                  if "__pycache__" not in path.parts)


def named_in_the_map(module: str, named: set[str]) -> bool:
    """A module is on the map when a table row names it; a package's __init__.py when a row
    names its folder; a scenario family when a row names audit/scenarios/."""
    if module in named:
        return True
    folder = module.rsplit("/", 1)[0] + "/"
    if module.endswith("/__init__.py"):
        return folder in named
    return (folder == SCENARIOS and SCENARIOS in named
            and is_scenario_family(ROOT / module))


def test_the_architecture_map_names_every_module() -> None:
    rows = "\n".join(line for line in text_of(ARCHITECTURE).splitlines()
                     if line.lstrip().startswith("|"))
    named = package_paths(rows)
    missing = [module for module in modules_of_the_package()
               if not named_in_the_map(module, named)]
    assert not missing, ("docs/architecture.md's module table has no row for "
                         f"{', '.join(missing)}: add one row per module (a package by its "
                         "folder, `audit/x/`), saying its job in a line")


def test_the_map_test_sees_the_tree() -> None:
    """The two rules above read what they should: modules, families, packages."""
    modules = modules_of_the_package()
    assert "audit/cli.py" in modules and "audit/store/results.py" in modules
    families = [module for module in modules if module.startswith(SCENARIOS)
                and is_scenario_family(ROOT / module)]
    assert f"{SCENARIOS}rng.py" in families
    assert f"{SCENARIOS}registry.py" not in families
    assert package_paths("see `audit/run/pool/`, `audit/cli.py`, audit/x and audit.run") == {
        "audit/run/pool/", "audit/cli.py"}


# --- the front door -----------------------------------------------------------------------

def test_readme_is_a_front_door() -> None:
    lines = text_of(README).splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines (at most {README_MAX_LINES}): move the details "
        "to a page under docs/")


@pytest.mark.parametrize("command", FRESH_MACHINE_COMMANDS)
def test_readme_gives_the_fresh_machine_commands_verbatim(command: str) -> None:
    lines = [line.strip() for line in text_of(README).splitlines()]
    assert command in lines, f"README.md lacks the command line {command!r}"


@pytest.mark.parametrize("page", pages(), ids=shown)
def test_no_diary(page: Path) -> None:
    text = text_of(page).lower()
    found = [phrase for phrase in DIARY if phrase in text]
    assert not found, (f"{shown(page)} reads like a lab notebook ({', '.join(found)}): "
                       "say what is, and leave the history to commit messages")
