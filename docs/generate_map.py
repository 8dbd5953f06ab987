"""The module map of docs/architecture.md, generated from migrations_ops/ itself.

One table row per module: its path and the first line of its module docstring (no line counts: the
map checks the structure, and an edit inside a module must not make it stale).
Django migration files (migrations_ops/migrations/) and empty ``__init__.py`` files are left out.
Reads the files with ``ast`` only: nothing is imported, Django is not needed.

    python docs/generate_map.py            print the map
    python docs/generate_map.py --write    rewrite it in docs/architecture.md, between the markers
    python docs/generate_map.py --check    exit 1 when docs/architecture.md's map is out of date
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "migrations_ops"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
START = "<!-- map:start -->"
END = "<!-- map:end -->"
SKIPPED_DIRS = {"migrations", "__pycache__"}


def modules(root: Path = ROOT) -> list[Path]:
    """Every module of the package, by path, minus migrations and empty ``__init__.py`` files."""
    found = []
    for path in sorted((root / PACKAGE).rglob("*.py")):
        relative = path.relative_to(root)
        if SKIPPED_DIRS & set(relative.parts[:-1]):
            continue
        if path.name == "__init__.py" and not path.read_text(encoding="utf-8").strip():
            continue
        found.append(path)
    return found


def summary(source: str) -> str:
    """The first line of the module docstring, or a dash when there is none."""
    docstring = ast.get_docstring(ast.parse(source))
    if not docstring or not docstring.strip():
        return "-"
    return docstring.strip().splitlines()[0].strip()


def generate(root: Path = ROOT) -> str:
    """The map as Markdown table lines (no trailing newline)."""
    lines = ["| module | first line of its docstring |", "|---|---|"]
    for path in modules(root):
        text = summary(path.read_text(encoding="utf-8")).replace("|", "\\|")
        lines.append(f"| `{path.relative_to(root).as_posix()}` | {text} |")
    return "\n".join(lines)


def current(document: str) -> str:
    """The map as it stands between the markers of ``document``."""
    start, end = document.find(START), document.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"{ARCHITECTURE}: the markers {START} and {END} are missing")
    return document[start + len(START) : end].strip("\n")


def rewrite(document: str, table: str) -> str:
    current(document)  # the markers must be there
    start, end = document.find(START), document.find(END)
    return document[: start + len(START)] + "\n" + table + "\n" + document[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help=f"rewrite the map in {ARCHITECTURE.relative_to(ROOT)}")
    action.add_argument("--check", action="store_true", help="exit 1 when the map there is out of date")
    options = parser.parse_args(argv)
    table = generate()
    if not options.write and not options.check:
        print(table)
        return 0
    document = ARCHITECTURE.read_text(encoding="utf-8")
    if options.check:
        if current(document) != table:
            where = ARCHITECTURE.relative_to(ROOT)
            print(f"{where}: the module map is out of date; run `python docs/generate_map.py --write`")
            return 1
        return 0
    ARCHITECTURE.write_text(rewrite(document, table), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
