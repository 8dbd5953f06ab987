"""The documentation stays true to the repository: the generated module map, links, quoted paths,
and the README's promise of two set-up commands in a short page.

Reads files only: no database, no Django.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
README_MAX_LINES = 150
SETUP_COMMANDS = ["make migrate", "make test"]

# [text](target) and [text]: target; images too. Code spans and fenced blocks are removed first.
INLINE_LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:, ...
# A repository path quoted in a code span: `migrations_ops/pipeline/core.py`, `tests/migration_apps/`.
QUOTED_PATH = re.compile(r"`([A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)+/?)`")


def load_generator():
    spec = importlib.util.spec_from_file_location("generate_map", ROOT / "docs" / "generate_map.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prose(text: str) -> str:
    """The text without fenced blocks and code spans (where brackets are code, not links)."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def links(page: Path) -> list[str]:
    text = prose(page.read_text(encoding="utf-8"))
    return [*INLINE_LINK.findall(text), *REFERENCE_LINK.findall(text)]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text (no backticks or asterisks) in lower case, punctuation
    but hyphens and underscores dropped, spaces as hyphens."""
    text = heading.strip().replace("`", "").replace("*", "").lower()
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.MULTILINE):
        base = slug(heading)
        anchor, n = base, 0
        while anchor in found:
            n += 1
            anchor = f"{base}-{n}"
        found.add(anchor)
    return found


def test_the_module_map_is_what_the_script_generates():
    generator = load_generator()
    document = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert generator.current(document) == generator.generate(), (
        "docs/architecture.md's module map is out of date (a module of migrations_ops was added, removed "
        "or edited): run `python docs/generate_map.py --write`"
    )


def test_the_map_lists_every_module_and_only_modules():
    generator = load_generator()
    listed = re.findall(r"^\| `([^`]+)` \|", generator.generate(), re.MULTILINE)
    assert listed == [path.relative_to(ROOT).as_posix() for path in generator.modules()]
    assert "migrations_ops/management/commands/safe_migrate.py" in listed
    assert not any("/migrations/" in path for path in listed)


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_relative_links_point_to_files_in_the_repository(page):
    broken = []
    for target in links(page):
        if EXTERNAL.match(target):
            continue
        path_part, _, fragment = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page
        if not resolved.is_relative_to(ROOT):
            broken.append(f"{target}: outside the repository")
        elif not resolved.exists():
            broken.append(f"{target}: no such file")
        elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
            broken.append(f"{target}: no heading #{fragment} in {resolved.relative_to(ROOT)}")
    assert broken == [], f"{page.relative_to(ROOT)}: broken links"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_quoted_repository_paths_exist(page):
    """A path quoted as code whose first part is a top-level entry of the repository must exist
    (`migrations_ops/runner.py` after runner.py is gone is a stale doc)."""
    top = {entry.name for entry in ROOT.iterdir()}
    text = page.read_text(encoding="utf-8")
    missing = sorted(
        {path for path in QUOTED_PATH.findall(text) if path.split("/")[0] in top and not (ROOT / path).exists()}
    )
    assert missing == [], f"{page.relative_to(ROOT)} quotes paths that do not exist"


# A module or folder named in architecture.md's layer diagrams: `pipeline/core.py`, `backups/`, `cli.py`.
DIAGRAM_NAME = re.compile(r"(?<![\w./-])([A-Za-z_][\w/]*(?:\.py|/))(?:\*)?(?![\w/])")
SKIPPED = {".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis", "var"}


def test_the_layer_diagrams_name_modules_that_exist():
    """The hand-drawn layers of docs/architecture.md name real modules and folders (the generated map
    lists them all; this catches a diagram still naming one that was moved or removed)."""
    paths = set()
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = [name for name in subfolders if name not in SKIPPED]
        relative = Path(folder).relative_to(ROOT)
        paths.update((relative / name).as_posix() for name in [*subfolders, *files])
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    diagrams = re.findall(r"^```\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    assert diagrams, "docs/architecture.md has no layer diagram"
    names = {name.rstrip("/") for diagram in diagrams for name in DIAGRAM_NAME.findall(diagram)}
    assert len(names) > 30
    unknown = sorted(name for name in names if not any(p == name or p.endswith("/" + name) for p in paths))
    assert unknown == [], "docs/architecture.md names modules that do not exist"


def test_the_readme_states_the_two_setup_commands_first_and_is_short():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) < README_MAX_LINES
    first_block = re.search(r"^```[a-z]*\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    assert first_block, "README.md has no code block"
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines() if line.strip()]
    assert commands == SETUP_COMMANDS
    assert "../shared/" not in text
