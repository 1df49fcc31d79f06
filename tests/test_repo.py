"""Repository hygiene: BUILD mirrors the package, ruff is clean, CI runs the README command."""

import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _build_targets():
    text = (ROOT / "BUILD").read_text()
    targets = {}
    for kind, body in re.findall(r"(py_library|py_test|py_binary)\((.*?)\n\)", text, re.S):
        for src in re.findall(r'"([^"]+\.py)"', re.search(r"srcs\s*=\s*\[(.*?)\]", body, re.S)[1]):
            targets.setdefault(src, set()).add(kind)
    return targets


def test_every_module_and_test_has_a_build_target():
    targets = _build_targets()
    missing = []
    for path in sorted((ROOT / "tfglo").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel not in targets:
            missing.append(rel)
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if "py_test" not in targets.get(rel, set()):
            missing.append(rel)
    assert not missing, f"BUILD has no target for: {missing}"


def test_build_lists_no_missing_file():
    stale = [src for src in _build_targets() if not (ROOT / src).is_file()]
    assert not stale, f"BUILD names files that do not exist: {stale}"


def test_apps_are_binaries():
    targets = _build_targets()
    for app in ("prepare", "train", "evaluate", "render", "export", "bench"):
        rel = f"tfglo/{app}.py"
        if (ROOT / rel).is_file():
            assert "py_binary" in targets.get(rel, set()), f"{rel} needs a py_binary target"


def test_ruff_lint_and_format_are_clean():
    ruff = shutil.which("ruff", path=str(pathlib.Path(sys.executable).parent)) or shutil.which(
        "ruff"
    )
    if ruff is None:
        pytest.skip("ruff is not installed (it is part of the test extra)")
    check = subprocess.run([ruff, "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout[-4000:]
    fmt = subprocess.run([ruff, "format", "--check", "."], cwd=ROOT, capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout[-4000:]


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme
    commands = [line.strip() for line in ci.splitlines() if line.strip() and line[0] != "#"]
    assert commands[-1] == "make test"
