r"""What did the network learn? ``python -m experiments.analyze --workdir=<run dir>``.

Works on a run of any family (`livermore_brain.families.load_features`). Reads the newest
verified checkpoint and the run's config and writes into the run directory:

* ``filters.png`` — RICA runs: first-layer filters over a sampling of grid locations, whitening
  undone (paper Fig. 4);
* ``top_stimuli.png`` — the top-k probe images of the studied layer's most selective neurons
  (rows = neurons, columns = images; paper Fig. 5), ``top_stimuli_neurons.png`` for the neuron
  ids given with ``--config.neurons``, and ``top_stimuli.json`` (ids, activations, image indices);
* ``selectivity.json`` / ``selectivity.png`` — every neuron's best single-threshold accuracy for
  "positive class vs the rest" on a labeled probe set, for the trained network and for a
  random-weight network of the same architecture, with the chance rate (Le et al. 2012);
* ``controls.json`` — Le et al.'s controls beside the studied layer's best neuron: the random
  network's best neuron, the best single input pixel, the best linear filter (a logistic probe on
  the pixels, thresholded like a neuron) and, for RICA runs, the best first-layer neuron; each
  same-set (Le's numbers) and held out (threshold and neuron chosen on one half of the probe,
  accuracy on the other; `eval.controls`);
* ``filter_stats.json`` — RICA runs: excess kurtosis of every first-layer filter's responses on
  held-out whitened patches from the run's pipeline (another seed), against random unit-norm
  filters (`eval.filter_stats`);
* ``gabor.json`` — RICA runs: the share of first-layer filters a 2-D Gabor fits with R² above a
  threshold, in pixel space (whitening undone, as in ``filters.png``), against random unit-norm
  filters shown the same way (`eval.gabor`);
* ``invariance.png`` / ``invariance.json`` — the best selectivity neuron's response as positive
  probe images are scaled, shifted and rotated in the plane (Le et al. 2012, Fig. 4;
  `eval.invariance`);
* ``optimal_stimuli.png`` — RICA runs: chosen neurons' optimal inputs by norm-constrained
  gradient ascent;
* ``analysis.json`` — a summary of all of the above.

Everything is computed by library functions (`livermore_brain.eval`); `analyze` is importable
(notebooks call it) and defines no flags; the flags exist only when run as a program.
"""

from __future__ import annotations

import json
import os

import jax.numpy as jnp
import numpy as np

from livermore_brain import families, viz
from livermore_brain.data import labeled
from livermore_brain.eval import controls as controls_lib
from livermore_brain.eval import filter_stats, gabor, invariance
from livermore_brain.eval import optimal_stimulus as opt_lib
from livermore_brain.eval import selectivity as sel_lib
from livermore_brain.eval import topk as topk_lib
from livermore_brain.layers import geometry as geo
from livermore_brain.rica import features as bfl
from livermore_brain.rica import task as rica_task


def parse_ids(text) -> list[int]:
  """``"3, 17"`` (or a sequence) -> ``[3, 17]``; clear error for anything else."""
  if text is None or (isinstance(text, str) and not text.strip()):
    return []
  parts = text.replace(" ", "").split(",") if isinstance(text, str) else list(text)
  try:
    return [int(p) for p in parts if str(p) != ""]
  except ValueError:
    raise ValueError(f"neuron ids must be comma-separated integers, got {text!r}") from None


def binary_probe(data, positive: str, balance: bool = True, seed: int = 0):
  """``(images, labels bool, raw_indices)`` for "``positive`` vs the rest" from a `Labeled` set.

  ``balance``: keep every positive and as many negatives, drawn round-robin over the other
  classes (seeded), so the chance rate is 50% (Le et al. 2012 report chance next to accuracy).
  """
  names = [str(n) for n in data.class_names]
  if str(positive) not in names:
    raise ValueError(
      f"positive class {positive!r} is not a class of the probe set; its classes are "
      f"{', '.join(names[:20])}{' ...' if len(names) > 20 else ''}"
    )
  pos = names.index(str(positive))
  y = np.asarray(data.labels) == pos
  if not y.any() or y.all():
    raise ValueError(f"the probe set needs images of class {positive!r} and of other classes")
  idx = np.arange(y.size)
  if balance:
    rng = np.random.default_rng(seed)
    neg = np.flatnonzero(~y)
    neg = neg[rng.permutation(neg.size)]
    cls = np.asarray(data.labels)[neg]
    rank = np.empty(neg.size, np.int64)
    for k in np.unique(cls):  # round robin: rank within class, then by rank
      rank[cls == k] = np.arange(int((cls == k).sum()))
    neg = neg[np.argsort(rank, kind="stable")][: int(y.sum())]
    idx = np.sort(np.concatenate([np.flatnonzero(y), neg]))
  return data.images[idx], y[idx], idx


def write_filters(bf: bfl.BrainFeatures, path: str, locations: int = 16, per_location: int = 16):
  """First-layer filter tiles at a grid sampling of locations, whitening undone for display."""
  g = bf.spec.geometries[0]
  locs = geo.sample_locations(g, locations)
  rica_task.save_filters(
    path,
    bf.params[0]["w"],
    g,
    undo=None if bf.whitening is None else bf.whitening.undo,
    title=f"{bf.spec.layers[0].name}, step {bf.step}: {len(locs)} of {g.num_locations} "
    f"locations of the {g.grid[0]}x{g.grid[1]} grid",
    locations=locs,
    per_location=per_location,
  )
  coords = ", ".join(f"({i // g.grid[1]},{i % g.grid[1]})" for i in locs[:4])
  return {"path": path, "locations": locs.tolist(), "first_coords": coords}


def filter_kurtosis(bf: bfl.BrainFeatures, num_images: int = 128, seed: int | None = None):
  """`filter_stats.summary` of layer 1 on ``num_images`` held-out pipeline images (seed: the
  run's seed + 1, never the first batches the run trained on at that seed)."""
  g = bf.spec.geometries[0]
  seed = int(bf.config.get("seed", 0)) + 1 if seed is None else int(seed)
  images = bf.pipeline_images(num_images, batch_size=min(64, num_images), seed=seed)
  x = np.asarray(geo.extract_patches(jnp.asarray(images.transpose(1, 2, 0, 3)), g))
  x = x[: g.num_locations]
  w = np.asarray(bf.params[0]["w"])[: g.num_locations]
  trained = filter_stats.response_kurtosis(w, x)
  rnd = filter_stats.response_kurtosis(filter_stats.random_unit_filters(w.shape, seed), x)
  return {"images": int(num_images), **filter_stats.summary(trained, rnd)}


def filter_gabor(bf: bfl.BrainFeatures, num_filters: int, threshold: float, seed: int = 0):
  """`gabor.summary` of ``num_filters`` layer-1 filters (random locations and filters, seeded)
  against as many random unit-norm filters, both mapped to pixel space like ``filters.png``."""
  g = bf.spec.geometries[0]
  w = np.asarray(bf.params[0]["w"])[: g.num_locations]
  rng = np.random.default_rng(seed)
  loc = rng.integers(0, w.shape[0], num_filters)
  k = rng.integers(0, w.shape[1], num_filters)
  shape = (num_filters, g.field_h, g.field_w, g.in_c)
  trained = w[loc, k].reshape(shape)
  rnd = filter_stats.random_unit_filters((num_filters, w.shape[-1]), seed).reshape(shape)
  if bf.whitening is not None:
    trained, rnd = bf.whitening.undo(trained), bf.whitening.undo(rnd)
  return gabor.summary(gabor.r2_scores(trained), gabor.r2_scores(rnd), threshold)


def selectivity_section(result: sel_lib.Selectivity, top: int = 10) -> dict:
  rank = result.ranking()[:top]
  b = result.best_neuron
  return {
    "best_neuron": int(b),
    "best_accuracy": float(result.best_accuracy),
    "threshold": float(result.threshold[b]),
    "polarity": int(result.polarity[b]),
    "mean_accuracy": float(np.mean(result.accuracy)),
    "median_accuracy": float(np.median(result.accuracy)),
    "top_neurons": [[int(i), float(result.accuracy[i])] for i in rank],
    "num_neurons": int(result.accuracy.size),
  }


def selectivity_report(trained_features, random_features, labels) -> tuple[dict, tuple]:
  """``selectivity.json``'s sections (``trained``, ``random``, ``chance``) from features."""
  tr = sel_lib.best_threshold(trained_features, labels)
  rn = sel_lib.best_threshold(random_features, labels)
  return {
    "trained": selectivity_section(tr),
    "random": selectivity_section(rn),
    "chance": tr.chance,
  }, (tr, rn)


def top_stimuli(bf, images, layer, k: int, batch_size: int, preprocessed: bool):
  """Streamed `topk.NeuronStats` of ``layer`` over ``images``."""
  stats = topk_lib.NeuronStats(k)
  kw = {"preprocessed": True} if preprocessed else {}
  for batch in bf.stream(images, layer, batch_size=batch_size, **kw):
    stats.update(batch)
  return stats


def _stimuli_figure(stats, neurons, display, path, title):
  vals, idx = stats.topk.result()
  grid = np.stack([display[idx[n]] for n in neurons])  # (neurons, k, H, W, C)
  viz.image_grid(
    grid, path, titles=[f"neuron {n}" for n in neurons], normalize=True, suptitle=title
  )
  return [
    {"neuron": int(n), "activations": vals[n].tolist(), "images": idx[n].tolist()} for n in neurons
  ]


def analyze(workdir: str, config, log=print) -> dict:
  """Every analysis of the run in ``workdir`` (see the module docstring); returns the summary."""
  out = lambda name: os.path.join(workdir, name)
  step = None if int(config.step) < 0 else int(config.step)
  bf = families.load_features(workdir, step=step)
  workdir = bf.workdir
  is_rica = isinstance(bf, bfl.BrainFeatures)
  if is_rica:
    layer = bf.layer_index(config.layer if config.layer != "" else -1)
    lname = bf.spec.layers[layer].name
  else:  # a convnet: the global-pool layer by default
    lname = layer = str(config.layer or ("pool" if "pool" in bf.layers else bf.layers[-1]))
    if layer not in bf.layers:
      raise ValueError(f"unknown layer {layer!r}; this run exports {', '.join(bf.layers)}")
  h, w, c = bf.input_shape
  # Load the labeled probe first: a bad --config.probe fails before any compute.
  p = config.probe
  train, test, probe_desc = labeled.labeled_sets(
    p.source,
    (h, w, c),
    seed=int(p.seed),
    train_limit=int(p.limit) or None,
    test_limit=int(p.limit) or None,
    data_dir=p.tfds_data_dir or None,
  )
  merged = labeled.at_input(
    type(train)(
      np.concatenate([train.images, test.images]),
      np.concatenate([train.labels, test.labels]),
      train.class_names,
    ),
    (h, w, c),
  )
  probe_x, probe_y, _ = binary_probe(merged, p.positive, bool(p.balance), int(p.seed))
  if config.stimuli.source not in ("run", "probe"):
    raise ValueError(f"stimuli.source must be 'run' or 'probe', got {config.stimuli.source!r}")
  m = int(bf.features(probe_x[:1], layer).shape[1])
  chosen = parse_ids(config.neurons)
  bad = [n for n in chosen if not 0 <= n < m]
  if bad:
    raise ValueError(f"neuron ids {bad} out of range: {lname} has {m} neurons (0..{m - 1})")
  log(f"analyze: {workdir}, step {bf.step}, layer {lname}, mesh {dict(bf.mesh.shape)}")
  summary = {"workdir": workdir, "step": bf.step, "layer": lname}

  if is_rica:
    summary["filters"] = write_filters(
      bf, out("filters.png"), int(config.filters.locations), int(config.filters.per_location)
    )
    log(f"  filters.png: {len(summary['filters']['locations'])} first-layer locations")
    if int(config.filters.kurtosis_images) > 0:
      fs = filter_kurtosis(bf, int(config.filters.kurtosis_images))
      summary["filter_stats"] = fs
      with open(out("filter_stats.json"), "w") as f:
        json.dump(fs, f, indent=2)
      held = "whitened patches" if bf.whitening is not None else "patches (not whitened)"
      log(
        f"  layer-1 response kurtosis on held-out {held}: median "
        f"{fs['trained_median']:.2f} trained vs {fs['random_median']:.2f} random unit-norm "
        f"filters; {100 * fs['trained_above_random_p95']:.0f}% of trained filters above the "
        "random filters' 95th percentile"
      )
    if int(config.filters.gabor_filters) > 0:
      gs = filter_gabor(
        bf, int(config.filters.gabor_filters), float(config.filters.gabor_threshold)
      )
      summary["gabor"] = gs
      with open(out("gabor.json"), "w") as f:
        json.dump(gs, f, indent=2)
      log(
        f"  Gabor fits (pixel space) of {gs['filters']} layer-1 filters: "
        f"{100 * gs['trained_share']:.0f}% with R² > {gs['threshold']} (median "
        f"{gs['trained_median_r2']:.2f}) vs {100 * gs['random_share']:.0f}% of random unit-norm "
        f"filters (median {gs['random_median_r2']:.2f})"
      )

  # Selectivity: trained vs random-weight network vs chance (Le et al. 2012).
  bs = int(config.batch_size)
  seed = None if int(config.random_seed) < 0 else int(config.random_seed)
  rnd = bf.random_network(seed)
  f_tr = bf.features(probe_x, layer, batch_size=bs)
  f_rn = rnd.features(probe_x, layer, batch_size=bs)
  report, (sel_tr, sel_rn) = selectivity_report(f_tr, f_rn, probe_y)
  report = {
    "layer": lname,
    "step": bf.step,
    "probe": {
      "source": p.source,
      "description": f"{probe_desc}, resampled to the network's {h}x{w}x{c}",
      "positive": str(p.positive),
      "images": int(probe_y.size),
      "positives": int(probe_y.sum()),
      "balanced": bool(p.balance),
    },
    **report,
  }
  report["random"]["network"] = rnd.name
  with open(out("selectivity.json"), "w") as f:
    json.dump(report, f, indent=2)
  viz.histogram(
    {"trained": sel_tr.accuracy, "random weights": sel_rn.accuracy},
    out("selectivity.png"),
    title=f"{lname}: best single-threshold accuracy, {p.positive!r} vs rest",
    xlabel="accuracy",
    vlines={"chance": report["chance"]},
  )
  summary["selectivity"] = {k: report[k] for k in ("trained", "random", "chance")}
  t, r = report["trained"], report["random"]
  log(
    f"  selectivity ({report['probe']['images']} probe images, positive {p.positive!r}): "
    f"trained best neuron {t['best_neuron']} {100 * t['best_accuracy']:.1f}%, random "
    f"{100 * r['best_accuracy']:.1f}%, chance {100 * report['chance']:.1f}%"
  )

  # Le et al.'s controls, same-set and held out.
  sources = {f"trained {lname}": f_tr, f"random weights {lname}": f_rn}
  if is_rica and layer != 0:
    sources[f"trained {bf.spec.layers[0].name}"] = bf.features(probe_x, 0, batch_size=bs)
  pixels = probe_x.reshape(probe_x.shape[0], -1)
  sources["best single pixel"] = pixels
  ctl = controls_lib.control_table(sources, probe_y, linear_inputs=pixels, seed=int(p.seed))
  with open(out("controls.json"), "w") as f:
    json.dump({"layer": lname, "probe": report["probe"], "controls": ctl}, f, indent=2)
  summary["controls"] = {k: {m: v[m] for m in ("same_set", "held_out")} for k, v in ctl.items()}
  log("  controls (best neuron of each; same-set and held-out accuracy):")
  log("  " + controls_lib.format_table(ctl).replace("\n", "\n  "))

  # Invariance of the best neuron (Le et al. 2012, Fig. 4).
  n_inv = min(int(config.invariance.images), int(probe_y.sum()))
  if n_inv > 0:
    b = sel_tr.best_neuron
    pol = float(sel_tr.polarity[b])
    neuron = lambda x: pol * bf.features(x, layer, batch_size=bs)[:, b]
    inv = invariance.curves(neuron, probe_x[probe_y][:n_inv])
    thr = pol * float(sel_tr.threshold[b])
    invariance.plot(
      inv,
      out("invariance.png"),
      title=f"{lname} neuron {b}: response to {n_inv} {p.positive!r} images (mean ± sd)",
      threshold=thr,
    )
    inv_doc = {"layer": lname, "neuron": int(b), "polarity": pol, "threshold": thr, **inv}
    with open(out("invariance.json"), "w") as f:
      json.dump(inv_doc, f, indent=2)
    summary["invariance"] = {"neuron": int(b), "images": n_inv}
    log(f"  invariance.png: neuron {b} over {n_inv} positive images")

  # Top stimuli (paper Fig. 5).
  s = config.stimuli
  if s.source == "run" and not is_rica:
    log(f"  stimuli.source=run needs a RICA run; using the probe images for {bf.family}")
  if s.source == "run" and is_rica:
    images = bf.pipeline_images(
      int(s.num_images), batch_size=min(64, int(s.num_images)), seed=int(s.seed)
    )
    display, pre, what = bf.undo_whitening(images), True, "the run's training pipeline"
  else:
    images = display = probe_x[: int(s.num_images)]
    pre, what = False, f"the labeled probe set ({probe_desc})"
  stats = top_stimuli(bf, images, layer, int(s.k), bs, pre)
  best = stats.most_selective(min(int(s.num_neurons), m), method=s.score).tolist()
  title = f"{lname} top-{s.k} stimuli over {len(images)} images from {what}"
  tops = {"source": what, "images": len(images), "score": s.score}
  tops["most_selective"] = _stimuli_figure(stats, best, display, out("top_stimuli.png"), title)
  if chosen:
    tops["chosen"] = _stimuli_figure(stats, chosen, display, out("top_stimuli_neurons.png"), title)
  with open(out("top_stimuli.json"), "w") as f:
    json.dump(tops, f, indent=2)
  summary["top_stimuli"] = {"neurons": best, "chosen": chosen, "images": len(images)}
  log(f"  top_stimuli.png: neurons {best} over {len(images)} images ({what})")

  o = config.optimal_stimulus
  if o.enabled and not is_rica:
    log(f"  optimal stimuli: RICA runs only (this run is {bf.family}); skipped")
  if o.enabled and is_rica:
    ids = list(dict.fromkeys([sel_tr.best_neuron, *chosen, *best]))[: int(o.max_neurons)]
    x0 = images if pre else bf.preprocess(images)
    norm = float(np.median(np.sqrt(np.sum(np.square(x0), axis=(1, 2, 3)))))
    fn = bf.neuron_fn(layer, preprocessed=True)
    x, trace = opt_lib.optimal_stimulus(
      fn,
      ids,
      (h, w, c),
      steps=int(o.steps),
      step_size=float(o.step_size),
      norm=norm,
      zero_mean=True,
    )
    viz.image_grid(
      bf.undo_whitening(x),
      out("optimal_stimuli.png"),
      rows=1,
      titles=[f"neuron {i}" for i in ids],
      normalize=True,
      suptitle=f"{lname} optimal stimuli (norm {norm:.1f})",
    )
    summary["optimal_stimulus"] = {"neurons": ids, "activation": trace.max(0).tolist()}
    log(f"  optimal_stimuli.png: neurons {ids}")
  with open(out("analysis.json"), "w") as f:
    json.dump(summary, f, indent=2)
  figs = "filters,top_stimuli,selectivity,optimal_stimuli" if is_rica else "top_stimuli,selectivity"
  log(f"wrote {workdir}/{{{figs}}}.png, *.json")
  return summary


if __name__ == "__main__":
  from experiments import common

  common.run_on_run_dir(
    os.path.join(os.path.dirname(__file__), "configs", "analyze.py"), "analyze", analyze
  )
