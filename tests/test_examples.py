"""The notebooks in examples/: each runs top to bottom without an error,
and each holds the cells examples/make_notebooks.py generates (so the
reviewed Python source is what users open, and no outputs are committed).
"""
import importlib.util
import os

import nbformat
import pytest
from nbclient import NotebookClient

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
NOTEBOOKS = sorted(name for name in os.listdir(EXAMPLES) if name.endswith(".ipynb"))

#: Seconds one cell may take: the notebooks are meant to run in well under
#: two minutes on a laptop; a cell that hangs fails instead of stalling CI.
CELL_TIMEOUT = 180


def _generator():
    spec = importlib.util.spec_from_file_location("make_notebooks", os.path.join(EXAMPLES, "make_notebooks.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_notebooks_are_the_generated_ones():
    generator = _generator()
    assert NOTEBOOKS == sorted(generator.NOTEBOOKS)
    for name in NOTEBOOKS:
        with open(os.path.join(EXAMPLES, name), encoding="utf-8") as f:
            notebook = nbformat.read(f, as_version=4)
        nbformat.validate(notebook)
        # Compared cell by cell rather than byte by byte, so that a newer
        # nbformat writing its JSON differently does not fail the test.
        cells = [(cell.cell_type, cell.source) for cell in notebook.cells]
        assert cells == [(cell.cell_type, cell.source) for cell in generator.build(name).cells], (
            f"examples/{name} differs from what examples/make_notebooks.py writes: run it and commit both")
        assert all(not cell.get("outputs") for cell in notebook.cells), f"examples/{name} holds outputs"


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name, tmp_path, monkeypatch):
    # The kernel inherits this environment: Agg draws figures without a
    # display, and any file a notebook writes lands in tmp_path.
    monkeypatch.setenv("MPLBACKEND", "Agg")
    with open(os.path.join(EXAMPLES, name), encoding="utf-8") as f:
        notebook = nbformat.read(f, as_version=4)
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()        # raises CellExecutionError, naming the cell, if any cell fails
    errors = [output for cell in notebook.cells for output in cell.get("outputs", [])
              if output.get("output_type") == "error"]
    assert not errors
    assert all(cell.execution_count for cell in notebook.cells if cell.cell_type == "code")
