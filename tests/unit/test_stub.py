"""The typing stub _core.pyi and the compiled module name the same things."""

from __future__ import annotations

import ast
from pathlib import Path

from smartcity import _core

STUB = Path(_core.__file__).parent / "_core.pyi"
if not STUB.exists():  # editable installs keep the stub in the source tree
    STUB = Path(__file__).resolve().parents[2] / "smartcity" / "_core.pyi"


def test_stub_matches_module():
    tree = ast.parse(STUB.read_text())
    public_module = {n for n in dir(_core) if not n.startswith("_")}
    stub_names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef):
            stub_names.add(node.name)
            assert hasattr(_core, node.name), f"stub names {node.name}, the module lacks it"
        if isinstance(node, ast.ClassDef):
            cls = getattr(_core, node.name)
            for item in node.body:
                name = getattr(item, "name", None) or (
                    item.target.id if isinstance(item, ast.AnnAssign) else None
                )
                if name and not name.startswith("__"):
                    assert hasattr(cls, name), f"stub names {node.name}.{name}, the module lacks it"
    assert public_module - stub_names == set(), "module names missing from the stub"
