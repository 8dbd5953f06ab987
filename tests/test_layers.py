"""The house's rules that import-linter's contracts (pyproject.toml, run by `make lint`) do not state:
no module of migrations_ops imports, through any chain, a module that imports it."""

from __future__ import annotations

import grimp


def test_migrations_ops_has_no_import_cycle():
    graph = grimp.build_graph("migrations_ops", include_external_packages=False)
    cycles = sorted(
        {
            tuple(sorted((module, imported)))
            for module in graph.modules
            for imported in graph.find_modules_directly_imported_by(module)
            if graph.chain_exists(importer=imported, imported=module)
        }
    )
    assert cycles == [], "import cycles (each pair imports the other, directly or through a chain): " + "; ".join(
        " <-> ".join(pair) for pair in cycles
    )
