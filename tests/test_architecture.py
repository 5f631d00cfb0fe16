"""The house rules of docs/architecture.md, checked over the code itself (ast).

Each module of `digest` belongs to one layer; a module may import its own layer and the
layers below it, never one above. So a stage never reaches into a shell or into the jobs
that string stages together, the store never into a stage, and the models into nothing.
Imports under `if TYPE_CHECKING:` are for types only and do not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "digest"

#: Top-level names of `digest` by layer, from the top. A name not listed is a failure:
#: a new module must say where it belongs (docs/architecture.md).
LAYERS: list[tuple[str, frozenset[str]]] = [
    ("shell", frozenset({"cli", "web", "schedule"})),
    ("job", frozenset({"jobs", "editor"})),
    (
        "stage",
        frozenset(
            {
                "collect",
                "rank",
                "related",
                "copies",
                "clicks",
                "readership",
                "render",
                "render_checks",
                "campaign",
                "palette",
                "media",
                "note",
                "send",
                "subscribers",
                "environment",
            }
        ),
    ),
    ("store", frozenset({"store", "migrations"})),
    (
        "base",
        frozenset(
            {
                "models",
                "errors",
                "config",
                "config_values",
                "locale",
                "tokens",
                "related_settings",
                "subject_settings",
            }
        ),
    ),
]
RANK = {name: depth for depth, (_, names) in enumerate(LAYERS) for name in names}
LAYER_NAME = {name: layer for layer, names in LAYERS for name in names}


def _top(module: str) -> str:
    """`digest.send.ledger` -> `send`; `digest` alone -> ``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "digest" else ""


def _runtime_imports(path: Path) -> set[str]:
    """Every `digest...` module the file imports at run time (TYPE_CHECKING blocks aside)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for n in ast.walk(node))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "digest":
                found.update(f"digest.{alias.name}" for alias in node.names)
            elif node.module.startswith("digest."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("digest."))
    return found


def _modules() -> list[tuple[str, Path]]:
    return [
        (path.relative_to(ROOT.parent).with_suffix("").as_posix().replace("/", "."), path)
        for path in sorted(ROOT.rglob("*.py"))
    ]


def test_every_module_has_a_layer() -> None:
    unplaced = {_top(module) for module, _ in _modules()} - set(RANK) - {"", "__init__"}
    assert not unplaced, f"say which layer these belong to (docs/architecture.md): {unplaced}"


def test_no_module_imports_a_layer_above_its_own() -> None:
    broken = []
    for module, path in _modules():
        own = _top(module)
        if own not in RANK:
            continue
        for imported in _runtime_imports(path):
            other = _top(imported)
            if other in RANK and RANK[other] < RANK[own]:
                broken.append(
                    f"{module} ({LAYER_NAME[own]}) imports {imported} ({LAYER_NAME[other]})"
                )
    assert not broken, "\n".join(broken)


def test_the_models_import_nothing_of_digest_at_run_time() -> None:
    assert _runtime_imports(ROOT / "models.py") == set()


def test_the_rules_catch_a_stage_reaching_into_a_shell(tmp_path: Path) -> None:
    """The checker itself: a stage that imports the CLI is found, a type-only one is not."""
    bad = tmp_path / "stage.py"
    bad.write_text(
        "from typing import TYPE_CHECKING\n"
        "from digest.cli import main\n"
        "if TYPE_CHECKING:\n"
        "    from digest.web import create_app\n"
    )
    assert _runtime_imports(bad) == {"digest.cli"}
    assert RANK[_top("digest.cli")] < RANK[_top("digest.render")]
