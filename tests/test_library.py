"""stnlib stands alone: it never imports the book side (stnbook) or notebook tooling, and names no book paths."""

import ast
import os
import subprocess
import sys
from pathlib import Path

LIB = Path(__file__).resolve().parents[1] / "stnlib"
BOOK_ONLY = ("stnbook", "matplotlib", "IPython", "ipywidgets", "myst_nb", "nbformat", "papermill")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_library_file_imports_the_book_side():
    offenders = {str(p.relative_to(LIB)): sorted(m for m in imported_modules(p) if m.split(".")[0] in BOOK_ONLY)
                 for p in LIB.rglob("*.py")}
    assert not {k: v for k, v in offenders.items() if v}


def test_no_library_file_names_book_paths():
    for p in LIB.rglob("*.py"):
        text = p.read_text()
        for word in ("_config.yml", "results/", "results_dir", "project_root"):
            assert word not in text, f"{p.relative_to(LIB)} names {word!r}"


def test_importing_the_library_loads_nothing_of_the_book():
    code = ("import sys, stnlib, stnlib.train, stnlib.models, stnlib.data, stnlib.analysis, stnlib.geometry, "
            "stnlib.io; bad = sorted(m for m in sys.modules if m.split('.')[0] in %r); print(bad); "
            "sys.exit(1 if bad else 0)" % (BOOK_ONLY,))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# the library's own tests: they use nothing of the book side, so they pass from an installed copy alone
LIBRARY_TESTS = ("test_spatial_transformer.py", "test_transforms.py", "test_distortions.py", "test_models.py",
                 "test_train.py", "test_robustness.py", "test_mnist.py", "test_cub.py", "cub_tree.py",
                 "test_rectification.py", "test_ddp.py", "ddp_worker.py")


def test_library_tests_pass_from_pip_install_alone(tmp_path):
    """``pip install .`` into an empty folder, then the library's tests and doctests from a copy of them, with
    neither the checkout nor the book side on the path."""
    import shutil

    import pytest

    root = LIB.parent
    site, tests = tmp_path / "site", tmp_path / "tests"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                          "--target", str(site), str(root)], capture_output=True, text=True)
    if pip.returncode != 0 and "No module named pip" in pip.stderr:
        pytest.skip("pip is not installed in this environment")
    assert pip.returncode == 0, pip.stdout + pip.stderr
    assert sorted(p.name for p in site.iterdir() if not p.name.endswith(".dist-info")) == ["stnlib"]
    tests.mkdir()
    for name in LIBRARY_TESTS:
        shutil.copy(root / "tests" / name, tests / name)
    # python -S: the environment's packages (torch, pytest) on the path, but not its .pth files, which would put
    # the checkout (an editable install of stnlib, the book side) on it
    packages = [p for p in sys.path if p.endswith("site-packages")]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(tests), *packages])
    env["STNLIB_TEST_DATA"] = str(root / "data")  # the verified MNIST files the real-data tests read
    check = ("import importlib.util, stnlib; assert stnlib.__file__.startswith(%r), stnlib.__file__; "
             "assert importlib.util.find_spec('stnbook') is None, 'the book side is importable'" % str(site))
    result = subprocess.run([sys.executable, "-S", "-c", check], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    result = subprocess.run([sys.executable, "-S", "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-o", "addopts=",
                             "--doctest-modules", "--rootdir", str(tmp_path), str(tests), str(site / "stnlib")],
                            cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and " failed" not in result.stdout
