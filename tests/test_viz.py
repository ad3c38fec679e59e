"""Every figure is written as a valid, non-empty PNG."""

import json

import numpy as np
import pytest
from PIL import Image

from livermore_brain import viz


def _check_png(path):
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  with Image.open(path) as im:
    im.verify()
  with Image.open(path) as im:
    assert im.size[0] > 50 and im.size[1] > 50
    assert np.asarray(im.convert("L")).std() > 0  # something was drawn


def test_filter_grid(tmp_path):
  rng = np.random.default_rng(0)
  w = rng.normal(size=(40, 12, 6 * 6 * 3))
  w[36:] = 0  # padded locations
  p = viz.filter_grid(w, 6, 6, 3, str(tmp_path / "sub" / "f.png"), num_locations=36, max_filters=4)
  assert p.endswith("f.png")
  _check_png(p)
  undo = lambda x: x * 2.0 + 1.0
  p2 = viz.filter_grid(w, 6, 6, 3, str(tmp_path / "g.png"), locations=[0, 5], undo=undo, title="t")
  _check_png(p2)
  deep = rng.normal(size=(4, 8, 3 * 3 * 8))  # a second layer: shown as channel norms
  _check_png(viz.filter_grid(deep, 3, 3, 8, str(tmp_path / "d.png")))
  with pytest.raises(ValueError, match="D = 6\\*6\\*3"):
    viz.filter_grid(w[:, :, :10], 6, 6, 3, str(tmp_path / "x.png"))
  with pytest.raises(ValueError, match="locations"):
    viz.filter_grid(w, 6, 6, 3, str(tmp_path / "x.png"), num_locations=36, locations=[39])


def test_filter_grid_labels_rows_with_their_location_ids(tmp_path, monkeypatch):
  figs = []
  monkeypatch.setattr(viz, "_save", lambda fig, path: figs.append(fig) or path)
  sample = np.random.default_rng(1).normal(size=(3, 4, 2 * 2 * 3))  # locations 0, 7, 195 of a layer
  viz.filter_grid(sample, 2, 2, 3, str(tmp_path / "s.png"), location_ids=[0, 7, 195])
  viz.filter_grid(sample, 2, 2, 3, str(tmp_path / "t.png"))
  labels = [[t.get_text() for t in f.axes[0].get_yticklabels()] for f in figs]
  assert labels == [["loc 0", "loc 7", "loc 195"], ["loc 0", "loc 1", "loc 2"]]
  with pytest.raises(ValueError, match="one id per row"):
    viz.filter_grid(sample, 2, 2, 3, str(tmp_path / "x.png"), location_ids=[0, 7])


def test_image_grid(tmp_path):
  rng = np.random.default_rng(0)
  top = rng.normal(size=(3, 5, 12, 12, 3))  # neurons x top-5, whitened: normalized for display
  p = viz.image_grid(top, str(tmp_path / "top.png"), titles=[f"neuron {i}" for i in (4, 9, 1)])
  _check_png(p)
  flat = rng.random((7, 10, 10, 1))
  _check_png(viz.image_grid(flat, str(tmp_path / "flat.png"), rows=2, titles=list("abcdefg")))
  with pytest.raises(ValueError, match="titles"):
    viz.image_grid(flat, str(tmp_path / "x.png"), rows=2, titles=["a"])


def test_histogram(tmp_path):
  rng = np.random.default_rng(0)
  vals = {"trained": 0.6 + 0.1 * rng.random(100), "random": 0.5 + 0.05 * rng.random(100)}
  p = viz.histogram(vals, str(tmp_path / "h.png"), title="sel", vlines={"chance": 0.5})
  _check_png(p)
  _check_png(viz.histogram({"const": np.ones(5)}, str(tmp_path / "c.png")))


def test_loss_curves(tmp_path):
  rows = []
  for step in range(0, 100, 5):
    row = {"step": step, "layer1/loss": 10.0 / (1 + step), "img_per_s": 100.0}
    if step >= 30:  # a pipelined layer that starts late
      row["layer2/loss"] = 3.0 - 0.01 * step
    rows.append(row)
  p = viz.loss_curves(rows, str(tmp_path / "loss.png"), title="losses")
  _check_png(p)
  jsonl = tmp_path / "metrics.jsonl"
  jsonl.write_text("\n".join(json.dumps(r) for r in rows) + '\n{"step": 10')  # truncated tail
  _check_png(viz.loss_curves(str(jsonl), str(tmp_path / "loss2.png")))
  with pytest.raises(ValueError, match="no loss keys"):
    viz.loss_curves([{"step": 1, "acc": 0.5}], str(tmp_path / "x.png"))
