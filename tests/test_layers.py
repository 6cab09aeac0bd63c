"""The package's layering, read from the source (ast, no imports run): inference/ holds posterior machinery only
and never imports the validation tools (mocks, label-space systematics, the analytic test model)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "stellarinf"


def imported_modules(source: str, module: str) -> set[str]:
    """Absolute names of every module the code ``source`` of module ``module`` (dotted name) imports, top level or
    inside functions, relative imports resolved; ``from a import b`` yields both ``a`` and ``a.b`` (b may be a
    module). ``module`` of a package's ``__init__`` is the package's name plus ``.__init__``."""
    package = module.split(".")[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.add(name)
            out.update(f"{name}.{alias.name}" for alias in node.names)
    return out


def validation_imports(source: str, module: str) -> list[str]:
    return sorted(
        m
        for m in imported_modules(source, module)
        if m == "stellarinf.validation" or m.startswith("stellarinf.validation.")
    )


def test_import_parser_resolves_relative_and_function_level_imports():
    source = (
        "import numpy as np\n"
        "from ..validation.mocks import make_mock\n"
        "from .. import validation\n"
        "from .density import Problem\n\n"
        "def f():\n"
        "    import stellarinf.validation.setups\n"
    )
    assert validation_imports(source, "stellarinf.inference.probe") == [
        "stellarinf.validation",
        "stellarinf.validation.mocks",
        "stellarinf.validation.mocks.make_mock",
        "stellarinf.validation.setups",
    ]
    assert "stellarinf.inference.density" in imported_modules(source, "stellarinf.inference.probe")
    assert validation_imports("from .results import x\n", "stellarinf.inference.__init__") == []


@pytest.mark.parametrize(
    "path", sorted((PACKAGE / "inference").rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_inference_never_imports_validation(path):
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    bad = validation_imports(path.read_text(), module)
    assert not bad, (
        f"{path.relative_to(PACKAGE.parent)} imports {bad}: inference/ holds posterior machinery only; take what it "
        "needs as data (e.g. label systematics from the model's metadata) or move the code to stellarinf/validation/"
    )
