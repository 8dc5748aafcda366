"""The architecture, read from the source (AST, so imports inside functions count too): the data flow's arrows
point down (DESIGN.md), and the clinical and anatomical constants are defined once."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "monai", "gradio")
PACKAGES = ("inference", "clinical", "interop", "webapp", "training", "models", "data", "vfrisk")
GENANT_LOSS = {0.2, 0.25, 0.4}
GENANT_RATIO = {0.8, 0.75, 0.6}
DEFINITION = REPO / "inference" / "thresholds.py"


def sources(*packages: str) -> Iterator[Path]:
    for package in packages:
        yield from sorted((REPO / package).rglob("*.py"))


def imported(path: Path, root: Path = REPO) -> set[str]:
    """Every module a file imports, at module level or inside functions (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = path.relative_to(root).with_suffix("").parts[:-1]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package[: len(package) - node.level + 1], base]).strip(".")
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


def offenders(packages: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for path in sources(*packages):
        for module in sorted(imported(path)):
            if module.split(".")[0] in forbidden:
                bad.append(f"{path.relative_to(REPO)} imports {module}")
    return bad


def test_the_import_reader_sees_imports_inside_functions(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    probe = tmp_path / "pkg" / "m.py"
    probe.write_text("def f():\n    import torch.nn\n    from interop import reports\n    from . import x\n")
    assert {"torch.nn", "interop", "interop.reports", "pkg.x"} <= imported(probe, tmp_path)


def test_inference_and_clinical_import_no_torch_monai_or_gradio() -> None:
    assert offenders(("inference", "clinical"), HEAVY) == []


def test_inference_imports_neither_clinical_nor_interop() -> None:
    """The arrows point down the data flow: the suggestion and the reports are the application's stages."""
    assert offenders(("inference",), ("clinical", "interop", "webapp", "vfrisk", "training", "app")) == []


def test_clinical_imports_no_interop_webapp_or_training() -> None:
    assert offenders(("clinical",), ("interop", "webapp", "training", "vfrisk", "app")) == []


def _numbers(node: ast.AST) -> set[float]:
    return {round(float(n.value), 6) for n in ast.walk(node)
            if isinstance(n, ast.Constant) and isinstance(n.value, int | float) and not isinstance(n.value, bool)}


def _genant_like(node: ast.AST, text: str) -> bool:
    """A literal holding two or more Genant boundaries, or a comparison of a ratio/loss/grade with one."""
    if isinstance(node, ast.Tuple | ast.List | ast.Set | ast.Dict):
        found = _numbers(node)
        return len(found & GENANT_LOSS) >= 2 or len(found & GENANT_RATIO) >= 2
    if isinstance(node, ast.Compare):
        segment = (ast.get_source_segment(text, node) or "").lower()
        named = re.search(r"ratio|loss|grade|genant", segment) is not None
        return named and bool(_numbers(node) & (GENANT_LOSS | GENANT_RATIO | {20.0, 25.0, 40.0}))
    return False


def genant_definitions(path: Path) -> list[str]:
    text = path.read_text()
    tree = ast.parse(text)
    return [f"{path.relative_to(REPO)}:{node.lineno}" for node in ast.walk(tree) if _genant_like(node, text)]


def test_the_genant_boundaries_are_defined_once() -> None:
    found = [hit for path in sources(*PACKAGES) if path != DEFINITION for hit in genant_definitions(path)]
    assert found == []
    assert genant_definitions(DEFINITION)  # the definition itself is found by the same reader


@pytest.mark.parametrize("snippet", ["GRADES = (0.20, 0.25, 0.40)\n", "RATIO = [0.8, 0.75, 0.6]\n",
                                     "def g(loss):\n    return 3 if loss > 0.40 else 0\n",
                                     "def g(height_loss_pct):\n    return height_loss_pct < 20\n"])
def test_the_source_reader_would_find_a_second_definition(tmp_path: Path, snippet: str) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(snippet)
    tree = ast.parse(snippet)
    assert any(_genant_like(node, snippet) for node in ast.walk(tree)), snippet


def test_the_disclaimer_and_the_lab_encoding_are_written_once() -> None:
    wording = re.compile(r"not a diagnosis", re.IGNORECASE)
    encoding = re.compile(r"""1(\.0)?\s+if\b[^\n]*==\s*["']F["']\s*else\s+0|float\([^)\n]*==\s*["']F["']\)""")
    texts = {path: path.read_text() for path in [*sources(*PACKAGES), REPO / "app.py"]}
    assert [p.name for p, t in texts.items() if wording.search(t)] == ["disclaimer.py"]
    assert [p.name for p, t in texts.items() if encoding.search(t)] == ["spec.py"]
