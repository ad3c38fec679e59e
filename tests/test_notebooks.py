"""Every notebook in notebooks/ executes headless (nbclient, kernel python3) on tiny settings
(``LB_NOTEBOOK_FAST=1``); a cell that raises fails the test."""

from __future__ import annotations

import glob
import os

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))


@pytest.fixture(scope="module")
def shared_workdir(tmp_path_factory):
  """One run directory for the whole module: notebook 1 trains it, notebook 2 reuses it."""
  return str(tmp_path_factory.mktemp("notebook_run") / "run")


def test_there_are_notebooks():
  names = [os.path.basename(p) for p in NOTEBOOKS]
  assert len(names) >= 3, names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[os.path.basename(p) for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path, shared_workdir, monkeypatch):
  monkeypatch.setenv("LB_NOTEBOOK_FAST", "1")
  monkeypatch.setenv("LB_REPO_ROOT", ROOT)
  monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
  name = os.path.basename(path)
  scaling = name.startswith("03")
  monkeypatch.setenv("LB_NOTEBOOK_WORKDIR", str(tmp_path / "out") if scaling else shared_workdir)
  if not scaling:  # a plain one-device kernel, as on a laptop; the scaling notebook sets its own
    monkeypatch.delenv("XLA_FLAGS", raising=False)
  nb = nbformat.read(path, as_version=4)
  first = nb.cells[0] if nb.cells[0].cell_type == "code" else nb.cells[1]
  assert "google.colab" in first.source  # the install cell, a no-op outside Colab
  client = nbclient.NotebookClient(
    nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
  )
  client.execute()  # raises CellExecutionError naming the failing cell
  images = [
    o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    if "image/png" in o.get("data", {})
  ]  # fmt: skip
  assert images, f"{name} displayed no figure"
  assert not os.listdir(tmp_path) or set(os.listdir(tmp_path)) <= {"out"}  # nothing in the cwd
