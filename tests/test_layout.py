"""Running Python from the folder above a clone named ``minicnn``: that
folder is first on sys.path, so the clone itself is what ``import
minicnn`` finds. The clone root's ``__init__.py`` hands the import over
to the installed minicnn, or says what happened; without it an editable
install failed with ``cannot import name 'ones'``."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import minicnn

ROOT = Path(__file__).resolve().parent.parent


def clone_layout(tmp_path, with_root_init=True):
    """``tmp_path/minicnn``: a clone as git makes it (its root holds
    setup.py, README.md, minicnn/ and kernels/), the package folders linked
    rather than copied. Returns the folder above it."""
    clone = tmp_path / "minicnn"
    clone.mkdir()
    for name in ("setup.py", "README.md") + (("__init__.py",) if with_root_init else ()):
        shutil.copy(ROOT / name, clone / name)
    for name in ("minicnn", "kernels"):
        (clone / name).symlink_to(ROOT / name, target_is_directory=True)
    return tmp_path


def run(args, cwd, *flags):
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
    env.pop("PYTHONPATH", None)
    return subprocess.run([sys.executable, *flags, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_python_m_minicnn_from_the_folder_above_a_clone_runs_the_installed_package(tmp_path):
    parent = clone_layout(tmp_path)
    result = run(["-m", "minicnn", "models", "--filter", "lenet5"], parent)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "lenet5" in result.stdout
    result = run(["-c", "import minicnn as mc; print(mc.__file__); print(mc.ones(2).tolist())"], parent)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split("\n")[:2] == [minicnn.__file__, "[1.0, 1.0]"]


def test_without_an_installed_minicnn_the_error_says_what_to_do(tmp_path):
    # -S: no site-packages, so no installed minicnn (and no NumPy either:
    # the message comes before anything is imported).
    parent = clone_layout(tmp_path)
    result = run(["-c", "import minicnn"], parent, "-S")
    assert result.returncode == 1
    clone = str(parent / "minicnn")
    last = result.stderr.strip().split("\n")[-1]
    assert last.startswith(f"ImportError: {clone} is a clone of the minicnn repository, not the minicnn package")
    assert f"pip install -e {clone}" in last and f"cd {clone}" in last


def test_the_clone_root_file_does_nothing_under_another_name(tmp_path):
    # Imported under another name (a clone folder named otherwise), the
    # root holds no package and hands nothing over.
    (tmp_path / "repo").mkdir()
    shutil.copy(ROOT / "__init__.py", tmp_path / "repo" / "__init__.py")
    result = run(["-c", "import repo, sys; print('minicnn' in sys.modules)"], tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr[-2000:]


def editable_hook():
    """Whether minicnn is installed as an editable install that imports
    through a meta-path hook (setuptools' default for ``pip install -e``)."""
    return any("editable" in type(f).__name__.lower() or "editable" in getattr(f, "__name__", "").lower()
               for f in sys.meta_path)


@pytest.mark.skipif(not editable_hook(), reason="the failure needs an editable install's import hook")
def test_without_the_clone_root_file_the_editable_install_fails_as_reported(tmp_path):
    # The bug itself, so that this test says why the root file exists.
    parent = clone_layout(tmp_path, with_root_init=False)
    result = run(["-m", "minicnn", "models"], parent)
    assert result.returncode == 1 and "cannot import name" in result.stderr
