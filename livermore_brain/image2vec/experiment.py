"""The tagging experiment: TagProp, JEC, Image2Vec and ConSE on one run's features, side by side.

`prepare` loads the tag set, the word vectors of its tags and the image features (any run
directory and layer through `families.load_features`; ``pixels`` for raw pixels). `run` fits
the methods, writes ``tagging.md`` (all tags, n per image), ``zeroshot.md`` (held-out tags),
``results.json`` and ``search.png`` (query word -> top images; query image -> top tags).
"""

from __future__ import annotations

import functools
import json
import os
import time

import ml_collections
import numpy as np

from livermore_brain.image2vec import mapping, metrics, tagsets, wordvec, zeroshot
from livermore_brain.image2vec.tagprop import BaseDistances, TagProp, jec_scores


def word_vectors(spec: str) -> wordvec.WordVectors:
  """``wordllama`` (ships offline), a word2vec/GloVe text file, or a word-vector run directory."""
  if spec == "wordllama":
    return wordvec.wordllama_vectors()
  path = os.path.join(spec, "vectors.txt") if os.path.isdir(spec) else spec
  if not os.path.exists(path):
    raise FileNotFoundError(f"word vectors {spec!r}: {path} does not exist")
  return wordvec.load_vectors(path)


def parse_features_from(spec: str) -> tuple[str, list[str]]:
  """``<run dir>:<layer>[+<layer>...]`` or ``pixels`` -> (run dir or 'pixels', layers)."""
  if spec == "pixels":
    return "pixels", ["pixels"]
  run, sep, layers = spec.rpartition(":")
  if not sep or not run or not layers:
    raise ValueError(f"features_from must be <run dir>:<layer> or pixels, got {spec!r}")
  return run, layers.split("+")


def features(spec: str, sets, pool: int = 0):
  """Per set, a list of feature matrices (one per layer) and a description."""
  from livermore_brain.data import labeled

  run, layers = parse_features_from(spec)
  if run == "pixels":
    return [[s.images.reshape(len(s.images), -1)] for s in sets], "raw pixels"
  from livermore_brain import families

  fx = families.load_features(run)
  h, w, c = fx.input_shape
  out = []
  for s in sets:
    x = labeled.resize_to(s.images, (h, w), c)
    out.append([fx.features(x, layer, pool=pool or None) for layer in layers])
  return out, f"{fx.family} run {run} ({'+'.join(layers)}, input {h}x{w}x{c})"


def prepare(config: ml_collections.ConfigDict, log=print) -> dict:
  train, test = tagsets.load(
    config.tagset, int(config.get("image_size", 64)), seed=int(config.seed),
    **({"image_dir": config.image_dir} if config.tagset.startswith("yfcc100m") else {}),
  )  # fmt: skip
  wv = word_vectors(config.word_vectors)
  vocab = list(train.vocabulary)
  have = [i for i, t in enumerate(vocab) if wv.lookup(t) is not None]
  if len(have) < len(vocab):
    log(
      f"tags without a word vector, dropped: {[vocab[i] for i in range(len(vocab)) if i not in have]}"
    )
  vocab = [vocab[i] for i in have]
  train = tagsets.TagSet(train.images, train.tags[:, have], tuple(vocab))
  test = tagsets.TagSet(test.images, test.tags[:, have], tuple(vocab))
  vecs = np.stack([wv.lookup(t) for t in vocab]).astype(np.float32)
  (ftr, fte), desc = features(config.features_from, [train, test], int(config.get("pool", 0)))
  log(f"tag set {config.tagset}: {len(train.images)} train / {len(test.images)} test images, "
      f"{len(vocab)} tags, {train.tags.sum(1).mean():.2f} tags per image; word vectors "
      f"{config.word_vectors} ({wv.dim}-d); features: {desc}, {sum(f.shape[1] for f in ftr)}-d")  # fmt: skip
  return dict(train=train, test=test, vocab=vocab, vectors=vecs, wv=wv, ftr=ftr, fte=fte,
              features=desc)  # fmt: skip


def _fit_mapping(config, feats, tags, vecs, loss):
  m = config.mapping
  return mapping.Image2Vec.fit(
    np.concatenate(feats, 1), tags, vecs, depth=m.depth, hidden=m.hidden, loss=loss,
    margin=m.margin, steps=m.steps, batch_size=m.batch_size, learning_rate=m.learning_rate,
    seed=int(config.seed),
  )  # fmt: skip


def _fit_tagprop(config, feats, tags):
  t = config.tagprop
  return TagProp.fit(feats, tags, k=t.k, metrics=tuple(t.distances.split(",")), steps=t.steps,
                     learning_rate=t.learning_rate, seed=int(config.seed))  # fmt: skip


def run(config: ml_collections.ConfigDict, workdir: str, methods=("tagprop", "jec", "image2vec"),
        log=print) -> dict:  # fmt: skip
  """Fit ``methods`` on all tags and on the zero-shot split; write tables, figure, results."""
  os.makedirs(workdir, exist_ok=True)
  t0 = time.perf_counter()
  d = prepare(config, log)
  train, test, vecs, vocab = d["train"], d["test"], d["vectors"], d["vocab"]
  n = int(config.tags_per_image)
  losses = [s for s in config.mapping.losses.split(",") if s]
  rows, zrows, scores = {}, {}, {}

  # ---- all tags ------------------------------------------------------------------------------
  if "tagprop" in methods or "conse" in methods:
    tp = _fit_tagprop(config, d["ftr"], train.tags)
    scores["TagProp"] = tp.predict(d["fte"])
    log(f"TagProp: distance weights {np.round(tp.weights, 3).tolist()}, K={tp.k} "
        f"({time.perf_counter() - t0:.0f} s)")  # fmt: skip
  if "jec" in methods:
    base = BaseDistances.fit(d["ftr"], tuple(config.tagprop.distances.split(",")), config.seed)
    scores["JEC"] = jec_scores(base, d["ftr"], train.tags, d["fte"], k=config.jec_k)
    log(f"JEC ({time.perf_counter() - t0:.0f} s)")
  maps = {}
  if "image2vec" in methods:
    for loss in losses:
      maps[loss] = _fit_mapping(config, d["ftr"], train.tags, vecs, loss)
      scores[f"Image2Vec ({loss})"] = maps[loss].scores(np.concatenate(d["fte"], 1), vecs)
      log(f"Image2Vec ({loss}): final loss {maps[loss].history[-1][1]:.4f} "
          f"({time.perf_counter() - t0:.0f} s)")  # fmt: skip
  scores["chance"] = zeroshot.chance(len(test.images), len(vocab), config.seed)
  for name, s in scores.items():
    rows[name] = metrics.tagging_metrics(s, test.tags, n)
  # ---- zero-shot -----------------------------------------------------------------------------
  seen, unseen = zeroshot.split(vocab, config.zeroshot.heldout)
  keep = zeroshot.training_rows(train.tags, unseen)
  ftr_z = [f[keep] for f in d["ftr"]]
  tags_z = train.tags[keep][:, seen]
  assert not train.tags[keep][:, unseen].any()  # the split's promise (tested)
  zt = test.tags[:, unseen].any(1)
  fte_z = [f[zt] for f in d["fte"]]
  truth_z = test.tags[zt][:, unseen]
  nz = int(config.zeroshot.tags_per_image)
  zscores = {}
  if "image2vec" in methods:
    for loss in losses:
      mz = _fit_mapping(config, ftr_z, tags_z, vecs[seen], loss)
      zscores[f"Image2Vec ({loss})"] = mz.scores(np.concatenate(fte_z, 1), vecs[unseen])
  if "tagprop" in methods or "conse" in methods:
    tpz = _fit_tagprop(config, ftr_z, tags_z)
    zscores["ConSE (TagProp probabilities)"] = zeroshot.conse(
      tpz.predict(fte_z), vecs[seen], vecs[unseen], top=config.zeroshot.conse_top
    )
    zscores["TagProp"] = np.zeros((int(zt.sum()), len(unseen)))  # no neighbour carries them
  chance_runs = [metrics.tagging_metrics(zeroshot.chance(int(zt.sum()), len(unseen), s), truth_z, nz)
                 for s in range(20)]  # fmt: skip
  if config.zeroshot.get("normalize", "none") == "zscore":  # extra rows, hubness reduced
    zscores.update({f"{k}, column z-score": zeroshot.zscore_columns(v)
                    for k, v in list(zscores.items()) if k != "TagProp"})  # fmt: skip
  for name, s in zscores.items():
    zrows[name] = metrics.tagging_metrics(s, truth_z, nz)
  for name, s in list(zscores.items()):
    if name.startswith("Image2Vec") and len(unseen) > 1:  # is it the words? (control)
      control = zeroshot.shifted_tags_control(s, truth_z, nz)
      zrows[f"{name}, tags shifted (control)"] = control
  np.savez(os.path.join(workdir, "zeroshot_scores.npz"), truth=truth_z,
           **{k.replace(" ", "_"): v for k, v in zscores.items()})  # fmt: skip
  if "TagProp" in zrows:  # all-zero scores annotate nothing; by construction P = R = 0
    zrows["TagProp"].update(precision=0.0, recall=0.0, f1=0.0, n_plus=0, map=float("nan"))
  zrows["chance (mean of 20 draws)"] = {k: float(np.mean([c[k] for c in chance_runs]))
                                        for k in chance_runs[0]}  # fmt: skip
  result = dict(
    features=d["features"], tagset=config.tagset, word_vectors=config.word_vectors,
    vocabulary=vocab, tags_per_image=n, train_images=len(train.images), test_images=len(test.images),
    tagging=rows, zeroshot=dict(heldout=[vocab[i] for i in unseen], train_images=int(keep.sum()),
                                test_images=int(zt.sum()), tags_per_image=nz, rows=zrows),
    seconds=round(time.perf_counter() - t0, 1),
  )  # fmt: skip
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(result, f, indent=2)
  with open(os.path.join(workdir, "tagging.md"), "w") as f:
    f.write(table(rows, f"Tagging, {len(vocab)} tags, {n} per image ({d['features']})"))
  with open(os.path.join(workdir, "zeroshot.md"), "w") as f:
    f.write(table(zrows, f"Zero-shot: held-out {', '.join(result['zeroshot']['heldout'])}; "
                         f"{nz} per image over the held-out tags"))  # fmt: skip
  if maps:
    loss = losses[0]
    search_figure(os.path.join(workdir, "search.png"), maps[loss], d, config)
  return result


def table(rows: dict, title: str) -> str:
  out = [
    f"{title}\n",
    "| method | P | R | F1 | N+ | mAP (search by word) |",
    "|---|---|---|---|---|---|",
  ]
  for name, r in rows.items():
    out.append(f"| {name} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | "
               f"{r['n_plus']:.3g} / {r['tags']:.0f} | {_num(r['map'])} |")  # fmt: skip
  return "\n".join(out) + "\n"


def _num(x: float) -> str:
  return "–" if np.isnan(x) else f"{x:.3f}"


def search_figure(path: str, m: mapping.Image2Vec, d: dict, config, k: int = 6) -> None:
  """Rows of query word -> its ``k`` nearest test images; then query images -> their top tags."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  test, vocab, vecs = d["test"], d["vocab"], d["vectors"]
  emb = m.embed(np.concatenate(d["fte"], 1))
  words = [w for w in config.search.words.split(",") if w and d["wv"].lookup(w) is not None]
  nq = int(config.search.images)
  queries = np.random.default_rng(config.seed).choice(len(test.images), nq, replace=False)
  fig, axes = plt.subplots(len(words) + 1, k + 1, figsize=(1.6 * (k + 1), 1.6 * (len(words) + 1)))
  axes = np.atleast_2d(axes)
  show = lambda ax, img: ax.imshow(img.squeeze(), cmap="gray" if img.shape[-1] == 1 else None)
  for r, w in enumerate(words):
    axes[r, 0].text(0.5, 0.5, f'"{w}"', ha="center", va="center", fontsize=11)
    for c, i in enumerate(mapping.search_by_word(emb, d["wv"].lookup(w), k)):
      show(axes[r, c + 1], test.images[i])
  tag_unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
  for c in range(k + 1):
    axes[-1, c].axis("off")
  for j, q in enumerate(queries[: (k + 1) // 2]):
    show(axes[-1, 2 * j], test.images[q])
    top = np.argsort(-(emb[q] @ tag_unit.T))[:4]
    axes[-1, 2 * j + 1].text(0, 0.5, "\n".join(vocab[t] for t in top), va="center", fontsize=9)
  for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
  fig.suptitle("Image2Vec search: word -> nearest test images; image -> nearest tags", fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)


def _mean_sd(rows, k, f=".3f") -> str:
  if np.isnan(rows[0][k]):
    return "–"
  v = [x[k] for x in rows]
  return f"{np.mean(v):{f}} ± {np.std(v, ddof=1):{f}}" if len(v) > 1 else f"{v[0]:{f}}"


def summarize(workdirs) -> str:
  """Mean +- sd over several runs' ``results.json`` (e.g. seeds): both tables, one markdown."""
  rs = [json.load(open(os.path.join(w, "results.json"))) for w in workdirs]
  for w, r in zip(workdirs, rs):  # runs written before the control rows existed: add them
    path, rows = os.path.join(w, "zeroshot_scores.npz"), r["zeroshot"]["rows"]
    if os.path.exists(path):
      z = np.load(path)
      for key in z.files:
        name = key.replace("_", " ")
        if name.startswith("Image2Vec") and f"{name}, tags shifted (control)" not in rows:
          rows[f"{name}, tags shifted (control)"] = zeroshot.shifted_tags_control(
            z[key], z["truth"], r["zeroshot"]["tags_per_image"]
          )

  def block(key, title):
    names = list(rs[0][key]["rows"] if key == "zeroshot" else rs[0][key])
    names = sorted(names, key=lambda n: ("chance" in n, "control" in n))  # stable: groups
    out = [f"{title} (mean ± sd over {len(rs)} runs)\n",
           "| method | P | R | F1 | N+ | mAP (search by word) |", "|---|---|---|---|---|---|"]  # fmt: skip
    for n in names:
      rows = [(r[key]["rows"] if key == "zeroshot" else r[key])[n] for r in rs]
      cell = functools.partial(_mean_sd, rows)
      out.append(f"| {n} | {cell('precision')} | {cell('recall')} | {cell('f1')} | "
                 f"{cell('n_plus', '.1f')} / {rows[0]['tags']:.0f} | {cell('map')} |")  # fmt: skip
    return "\n".join(out) + "\n"

  z = rs[0]["zeroshot"]
  return (
    block(
      "tagging", f"Tagging, {len(rs[0]['vocabulary'])} tags, {rs[0]['tags_per_image']} per image"
    )
    + "\n"
    + block(
      "zeroshot", f"Zero-shot, held-out {', '.join(z['heldout'])}, {z['tags_per_image']} per image"
    )
  )
