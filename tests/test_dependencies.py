"""Every third-party module the package imports is declared: in install_requires, or in an extra with a message.

Derived from the source (``ast``, lazy imports inside functions and ``optional_import("x")`` included) and from
``setup.cfg``; import names are mapped to distributions with ``importlib.metadata.packages_distributions()``.
"""

from __future__ import annotations

import ast
import configparser
import importlib.metadata as md
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from medical_denoise import _optional
from medical_denoise.cli import _report

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "medical_denoise"
# the MONAI Label app runs inside monailabel's server, in .venv-label (scripts/setup_label_env.sh)
LABEL_APP = PACKAGE / "label"
# calls whose first argument names a module that is imported at run time
IMPORT_CALLS = {"optional_import", "import_module", "require"}
# distributions whose absence breaks a major release boundary: each needs an upper bound
BOUNDED = ("monai", "pytorch-ignite", "pydicom", "numpy", "torch")


@dataclass(frozen=True)
class ImportSite:
    module: str  # top-level import name
    path: Path
    line: int
    lazy: bool  # inside a function, or by name through an import call


def _imports(path: Path) -> list[ImportSite]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    sites: list[ImportSite] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                sites.extend(ImportSite(a.name.split(".")[0], path, child.lineno, in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                sites.append(ImportSite(child.module.split(".")[0], path, child.lineno, in_function))
            elif isinstance(child, ast.Call) and child.args and isinstance(child.args[0], ast.Constant):
                func = child.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                if name in IMPORT_CALLS and isinstance(child.args[0].value, str) and child.args[0].value:
                    sites.append(ImportSite(child.args[0].value.split(".")[0], path, child.lineno, True))
            visit(child, nested)

    visit(tree, False)
    return sites


def _third_party(sites: list[ImportSite]) -> list[ImportSite]:
    return [s for s in sites if s.module not in sys.stdlib_module_names and s.module != "medical_denoise"]


def source_imports(exclude: Path | None = None) -> list[ImportSite]:
    files = [p for p in sorted(PACKAGE.rglob("*.py")) if exclude is None or exclude not in p.parents]
    return _third_party([site for p in files for site in _imports(p)])


def declared() -> tuple[set[str], dict[str, set[str]], dict[str, Requirement]]:
    """(install_requires names, extra -> names, name -> requirement) from setup.cfg."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg", encoding="utf-8")

    def reqs(text: str) -> list[Requirement]:
        lines = (line.split("#")[0].strip() for line in text.splitlines())
        return [Requirement(line) for line in lines if line]

    core = reqs(cfg["options"]["install_requires"])
    extras = {
        name: {canonicalize_name(r.name) for r in reqs(text)} for name, text in cfg["options.extras_require"].items()
    }
    return {canonicalize_name(r.name) for r in core}, extras, {canonicalize_name(r.name): r for r in core}


def distributions(module: str) -> set[str]:
    found = md.packages_distributions().get(module)
    if not found:
        pytest.fail(f"{module} is imported by medical_denoise but not installed here: cannot map it to a distribution")
    return {canonicalize_name(d) for d in found}


def _where(sites: list[ImportSite]) -> str:
    return ", ".join(f"{s.path.relative_to(ROOT)}:{s.line}" for s in sites[:3])


def test_every_import_is_declared():
    core, extras, _ = declared()
    by_module: dict[str, list[ImportSite]] = {}
    for site in source_imports(exclude=LABEL_APP):
        by_module.setdefault(site.module, []).append(site)
    assert {"torch", "monai", "skimage", "pydicom"} <= set(by_module)  # the scan sees the package
    for module, sites in sorted(by_module.items()):
        dists = distributions(module)
        if dists & core:
            continue
        in_extras = {extra for extra, names in extras.items() if dists & names}
        assert in_extras, f"{module} ({', '.join(sorted(dists))}) is imported at {_where(sites)} but not declared"
        # an optional module: its extra is the one the message names, and importing the package never needs it
        assert _optional.EXTRA_OF_MODULE.get(module) in in_extras, (
            f"{module} comes with extra(s) {sorted(in_extras)}: add it to medical_denoise/_optional.EXTRA_OF_MODULE"
        )
        eager = [s for s in sites if not s.lazy]
        assert not eager, f"{module} is in an extra but imported at module level at {_where(eager)}"


def test_label_app_imports_are_in_its_environment():
    core, _, _ = declared()
    label_env = {
        canonicalize_name(Requirement(line.split("#")[0].strip()).name)
        for line in (ROOT / "requirements-label.txt").read_text().splitlines()
        if line.split("#")[0].strip()
    }
    label_env.add("monailabel")  # the server that loads the app, installed last by setup_label_env.sh
    assert "monailabel" in (ROOT / "scripts" / "setup_label_env.sh").read_text()
    for site in source_imports():
        if LABEL_APP not in site.path.parents:
            continue
        known = md.packages_distributions().get(site.module)
        names = {canonicalize_name(d) for d in known} if known else {canonicalize_name(site.module)}
        assert names & (core | label_env), f"{site.module} ({_where([site])}) is in neither setup.cfg nor .venv-label"


def test_optional_table_matches_setup_cfg():
    _, extras, _ = declared()
    for module, extra in _optional.EXTRA_OF_MODULE.items():
        assert extra in extras, f"EXTRA_OF_MODULE names extra {extra!r}, which setup.cfg does not define"
        found = md.packages_distributions().get(module)
        if found:  # every extra is installed in the test environment (scripts/setup_env.sh)
            assert {canonicalize_name(d) for d in found} & extras[extra], f"{module} is not installed by [{extra}]"
    assert set(extras) - {"test"} <= set(_optional.EXTRA_OF_MODULE.values()), "an extra without a message"


def test_versions_bounded_where_majors_break():
    _, _, core = declared()
    for name in BOUNDED:
        spec = core[canonicalize_name(name)].specifier
        assert any(s.operator in ("<", "<=", "~=", "==") for s in spec), f"{name} needs an upper bound in setup.cfg"


def test_bundle_configs_import_declared_modules():
    core, _, _ = declared()
    pattern = re.compile(r"\$import ([\w.]+)|_target_:\s*([A-Za-z_][\w]*)\.[\w.]+")
    for config in sorted((ROOT / "bundles" / "gan_denoise" / "configs").glob("*.yaml")):
        for match in pattern.finditer(config.read_text()):
            module = (match.group(1) or match.group(2)).split(".")[0]
            if module in sys.stdlib_module_names or module == "medical_denoise":
                continue
            assert distributions(module) & core, f"{config.name} imports {module}, which install_requires lacks"


@pytest.mark.parametrize("module,extra", [("bm3d", "bm3d"), ("onnxruntime", "export"), ("pylibjpeg", "clinical")])
def test_missing_extra_is_one_line_naming_it(module, extra, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, module, None)  # import of a None entry raises ImportError
    with pytest.raises(_optional.MissingExtraError) as info:
        _optional.require(module, "this feature")
    assert str(info.value) == f"this feature needs the '{extra}' extra: pip install 'medical-denoise[{extra}]'"
    # the command reports a plain ImportError of the module the same way, through MONAI's wrapper too
    try:
        try:
            __import__(module)
        except ImportError as e:
            raise RuntimeError("Failed to evaluate <expression>") from e
    except RuntimeError as wrapped:
        _report(wrapped, debug=False)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"medical-denoise[{extra}]" in err[0], err


def test_package_imports_without_extras():
    """``import medical_denoise`` and every subpackage work when no optional module can be imported."""
    blocked = sorted(_optional.EXTRA_OF_MODULE)
    code = (
        "import sys\n"
        f"for name in {blocked!r}:\n"
        "    sys.modules[name] = None\n"
        "import medical_denoise as m\n"
        "for sub in m.__all__:\n"
        "    getattr(m, sub)\n"
        "import medical_denoise.cli, medical_denoise.evaluation.restoration\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=ROOT, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]


def _closure(names: set[str]) -> set[str]:
    """``names`` and everything they require without extras (environment markers evaluated), as installed."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for line in requires:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(req.name))
    return seen


_TRACE = """
import json, sys
for name in json.loads(sys.argv[3]):
    sys.modules[name] = None  # as if not installed: importing it raises ImportError, find_spec gives None
before = set(sys.modules)
import medical_denoise as m
for sub in m.__all__:
    getattr(m, sub)
from medical_denoise.cli import main
assert main(["denoise", sys.argv[1], sys.argv[2], "--self_ensemble", "False"]) == 0
print(json.dumps(sorted({k.split(".")[0] for k in set(sys.modules) - before if sys.modules[k] is not None})))
"""


@pytest.mark.slow
def test_runtime_imports_are_declared(tmp_path):
    """``denoise`` runs as in an install without extras, and all it imports is required by install_requires.

    Modules that only extras bring are blocked, as if not installed, so a library's own lazy import of an
    undeclared package (scikit-image's estimate_sigma needs PyWavelets) fails here as it would for a user.
    """
    from PIL import Image

    core, extras, _ = declared()
    needed = _closure(core) | {"medical-denoise"}
    extra_only = _closure(set().union(*extras.values())) - needed
    mapping = md.packages_distributions()
    blocked = sorted(m for m, d in mapping.items() if {canonicalize_name(x) for x in d} <= extra_only)
    assert "bm3d" in blocked and "onnxruntime" in blocked
    Image.new("RGB", (32, 24), (120, 80, 60)).save(tmp_path / "in.png")
    run = subprocess.run(
        [sys.executable, "-c", _TRACE, str(tmp_path / "in.png"), str(tmp_path / "out"), json.dumps(blocked)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    modules = json.loads(run.stdout.strip().splitlines()[-1])
    missing = {}
    for module in modules:
        dists = {canonicalize_name(d) for d in mapping.get(module, ())}
        if dists and not dists & needed:
            missing[module] = sorted(dists)
    assert "pywt" in modules  # the noise estimate at inference: the case this test was written for
    assert not missing, f"imported at run time but not required by install_requires: {missing}"
