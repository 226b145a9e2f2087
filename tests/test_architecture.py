"""The layers hold: the kernel imports no part, and the registry is the one list of parts."""
from __future__ import annotations

import ast
from pathlib import Path

from coproduction.service import gateway_spec, load, part_names, service_names

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("services", "gateway", "bootstrap")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every absolute module an import statement in ``path`` names, anywhere in the file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
    return out


def test_the_kernel_imports_neither_services_nor_gateway_nor_bootstrap():
    upward = [f"{path.relative_to(ROOT)}:{line} imports {module}"
              for path in sorted((ROOT / "coproduction").rglob("*.py"))
              for line, module in imported_modules(path)
              if module.split(".")[0] in PARTS]
    assert upward == []


def test_the_import_check_sees_an_upward_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from gateway.app import database\n    import services.plans\n")
    assert [name for _line, name in imported_modules(module)] == ["gateway.app", "services.plans"]


def test_every_part_is_registered_once_and_loads_alike():
    assert part_names() == ("gateway", *service_names())
    for name in part_names():
        spec = load(name)
        assert spec.name == name
        assert spec.migrations.is_dir(), name
        assert spec.metadata.tables, name
    assert gateway_spec().name == "gateway"
    assert len({load(name).port for name in part_names()}) == len(part_names())


def test_no_module_is_over_400_lines():
    long = [f"{path.relative_to(ROOT)}: {n} lines"
            for package in ("coproduction", "bootstrap")
            for path in sorted((ROOT / package).rglob("*.py"))
            if "migrations" not in path.parts and (n := len(path.read_text().splitlines())) > 400]
    assert long == []
