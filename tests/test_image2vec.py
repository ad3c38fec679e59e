"""Image2Vec, word vectors, TagProp/JEC, metrics and the zero-shot split against independent
references (float64 numpy, hand-computed cases, planted problems)."""

from __future__ import annotations

import json
import math
import os
import shutil
from collections import Counter

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from livermore_brain import sharding as shd
from livermore_brain.image2vec import mapping, metrics, skipgram, tagsets, text, wordvec, zeroshot
from livermore_brain.image2vec.tagprop import BaseDistances, TagProp, jec_scores

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _sg_config(**kw) -> ml_collections.ConfigDict:
  import experiments.configs.word_vectors as cfg

  c = cfg.get_config("tiny")
  for k, v in kw.items():
    c[k] = v
  return c


# ---- skip-gram -------------------------------------------------------------------------------
def test_skipgram_gradients_match_numpy_reference():
  rng = np.random.default_rng(0)
  v, d, b, k = 11, 6, 7, 3
  p = {"in": rng.normal(size=(v, d)), "out": rng.normal(size=(v, d))}
  c, o = rng.integers(0, v, b), rng.integers(0, v, b)
  c[1] = c[0]  # repeated rows must accumulate
  n = rng.integers(0, v, (b, k))
  # numpy, float64, from the formulas: dL/dv_c = -(1 - s(u_o.v_c)) u_o + sum_k s(u_k.v_c) u_k, ...
  sig = lambda x: 1 / (1 + np.exp(-x))
  g_in, g_out, loss = np.zeros((v, d)), np.zeros((v, d)), 0.0
  for i in range(b):
    vc, uo = p["in"][c[i]], p["out"][o[i]]
    pos = uo @ vc
    loss += -np.log(sig(pos))
    g_in[c[i]] += -(1 - sig(pos)) * uo
    g_out[o[i]] += -(1 - sig(pos)) * vc
    for j in n[i]:
      s = p["out"][j] @ vc
      loss += -np.log(sig(-s))
      g_in[c[i]] += sig(s) * p["out"][j]
      g_out[j] += sig(s) * vc
  loss, g_in, g_out = loss / b, g_in / b, g_out / b
  pj = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), p)
  got_loss, got = jax.value_and_grad(skipgram.loss_fn)(
    pj, jnp.asarray(c), jnp.asarray(o), jnp.asarray(n)
  )
  np.testing.assert_allclose(float(got_loss), loss, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(got["in"]), g_in, atol=1e-5)
  np.testing.assert_allclose(np.asarray(got["out"]), g_out, atol=1e-5)


def test_negative_table_frequencies():
  counts = np.array([1000, 300, 40, 7, 1], np.int64)
  size = 100_000
  table = text.negative_table(counts, size)
  share = np.bincount(table, minlength=len(counts)) / size
  want = counts**0.75 / (counts**0.75).sum()
  np.testing.assert_allclose(share, want, atol=1.0 / size + 1e-12)
  assert not np.allclose(share, counts / counts.sum(), atol=1e-3)  # ^0.75, not the unigram
  # the in-step draw: uniform indices into the table sample that distribution
  idx = np.asarray(jax.random.randint(jax.random.key(0), (200_000,), 0, size))
  drawn = np.bincount(table[idx], minlength=len(counts)) / len(idx)
  np.testing.assert_allclose(drawn, want, atol=4e-3)


def test_subsampling_formula_and_pairs_by_hand():
  counts = np.array([900, 90, 10])
  t = 0.01
  f = counts / 1000
  keep = text.keep_probability(counts, t)
  np.testing.assert_allclose(keep, np.minimum(1, (np.sqrt(f / t) + 1) * t / f))
  assert keep[0] < 0.2 and keep[2] == 1.0
  assert np.all(text.keep_probability(counts, 0) == 1)
  # window 2 with every dynamic window at its maximum (rng draws b = 2 always), two documents
  ids, doc = np.array([0, 1, 2, 3, 4]), np.array([0, 0, 0, 1, 1])

  class Full:
    def integers(self, lo, hi, size):
      return np.full(size, hi - 1)

  c, x = text.skipgram_pairs(ids, doc, 2, Full())
  got = sorted(zip(c.tolist(), x.tolist()))
  want = sorted([(0, 1), (1, 0), (1, 2), (2, 1), (0, 2), (2, 0), (3, 4), (4, 3)])
  assert got == want


def test_word_vector_formats_round_trip(tmp_path):
  wv = wordvec.WordVectors(
    ("cat", "dog", "new york"), np.array([[1, 0.5], [0.25, -2], [3, 4]], np.float32)
  )
  wv.save(str(tmp_path / "w2v.txt"))
  back = wordvec.load_vectors(str(tmp_path / "w2v.txt"))
  assert back.words == ("cat", "dog", "new_york")
  np.testing.assert_allclose(back.vectors, wv.vectors)
  (tmp_path / "glove.txt").write_text("cat 1 0.5\ndog 0.25 -2\n")  # GloVe: no header
  g = wordvec.load_vectors(str(tmp_path / "glove.txt"))
  assert g.words == ("cat", "dog") and g.dim == 2
  np.testing.assert_allclose(g.lookup("cat dog"), [0.625, -0.75])  # a two-word tag: the mean
  assert g.lookup("cat mouse") is None
  assert g.nearest("cat", 1)[0][0] == "dog"


def test_word_similarity_spearman_by_hand():
  wv = wordvec.WordVectors(
    ("a", "b", "c", "d"), np.array([[1, 0], [1, 0.1], [0, 1], [-1, 0]], np.float32)
  )
  pairs = [("a", "b", 9.0), ("a", "c", 5.0), ("a", "d", 1.0), ("a", "zz", 3.0)]
  r = wordvec.word_similarity(wv, pairs)
  assert r["pairs"] == 3 and r["coverage"] == 0.75 and r["spearman"] == pytest.approx(1.0)


def _sgd_steps(mesh_spec, steps=4):
  config = _sg_config(
    mesh=mesh_spec, optimizer=ml_collections.ConfigDict(dict(name="adam", learning_rate=0.05))
  )
  mesh = shd.make_mesh(mesh_spec, jax.devices()[: 8 if mesh_spec else 1])
  model = skipgram.SkipGram(config, 50, mesh)
  state = model.init_state(jax.random.key(3))
  table = jax.device_put(text.negative_table(np.arange(50, 0, -1), 1000), shd.replicated(mesh))
  step = model.step_fn(jax.random.key(4), 1000)
  rng = np.random.default_rng(0)
  for _ in range(steps):
    c, x = (
      jax.device_put(rng.integers(0, 50, 128).astype(np.int32), model.pair_sharding())
      for _ in range(2)
    )
    state, _ = step(state, table, c, x)
  return state, model


def test_word_vectors_sharded_over_model_equal_one_device():
  one, _ = _sgd_steps("")
  many, model = _sgd_steps("data:2,model:4")
  assert model.rows == 64 and many.params["in"].sharding.spec[0] == "model"
  assert len(many.params["in"].addressable_shards) == 8
  np.testing.assert_allclose(np.asarray(many.params["in"]), np.asarray(one.params["in"]), atol=2e-6)
  np.testing.assert_allclose(
    np.asarray(many.params["out"]), np.asarray(one.params["out"]), atol=2e-6
  )


def test_planner_sizes_tables_per_device():
  config = _sg_config(dim=32, batch_size=256)
  mesh = shd.make_mesh("data:2,model:4", jax.devices()[:8])
  plan = skipgram.SkipGram(config, 100_000, mesh).plan(table_size=4096)
  assert plan["rows"] == 100_032 and plan["table_bytes_total"] == 2 * 100_032 * 32 * 4
  # adam: two moments per table; a quarter of everything per device (model = 4)
  assert plan["optimizer_bytes_total"] == 2 * plan["table_bytes_total"]
  assert plan["table_bytes_per_device"] == 3 * plan["table_bytes_total"] // 4
  assert plan["bytes_per_device"]["arguments"] >= plan["table_bytes_per_device"]
  assert plan["bytes_per_device"]["arguments"] < plan["table_bytes_total"]  # split, not replicated


def test_training_resumes_exactly(tmp_path):
  pytest.importorskip("gensim", reason="the Lee corpus ships in the gensim wheel")
  cfg = _sg_config()
  full = skipgram.train(cfg, str(tmp_path / "full"), log=lambda *_: None)
  # an interrupted run: the same run with only its step-20 checkpoint left (tiny saves at 20, 30)
  shutil.copytree(tmp_path / "full", tmp_path / "resumed")
  assert sorted(os.listdir(tmp_path / "resumed" / "checkpoints")) == ["20", "30"]
  shutil.rmtree(tmp_path / "resumed" / "checkpoints" / "30")
  os.remove(tmp_path / "resumed" / "vectors.txt")
  skipgram.train(cfg, str(tmp_path / "resumed"), log=lambda *_: None)
  a = wordvec.load_vectors(str(tmp_path / "full" / "vectors.txt"))
  b = wordvec.load_vectors(str(tmp_path / "resumed" / "vectors.txt"))
  assert a.words == b.words and len(a.words) > 50
  np.testing.assert_array_equal(a.vectors, b.vectors)
  assert full["similarity"]["wordsim353"]["pairs"] > 0


def test_bad_corpus_lines_are_skipped_and_counted(tmp_path):
  corpus = tmp_path / "corpus.txt"
  good = [b"the cat sat on the mat", b"a dog ran in the park", b"the cat and the dog"]
  lines = [good[0], b"", b"   ", b"caf\xe9 latin-1 bytes", good[1], b"\xff\xfe", good[2], b"!!!"]
  corpus.write_bytes(b"\n".join(lines * 40) + b"\n")
  skipped = Counter()
  docs = list(text.documents(f"text:{corpus}", skipped=skipped))
  assert len(docs) == 3 * 40 and docs[0] == text.tokenize(good[0].decode())
  assert skipped == {"empty_line": 3 * 40, "non_utf8": 2 * 40}  # blank, spaces, "!!!"; 2 bad
  cfg = _sg_config()
  cfg.source, cfg.min_count, cfg.num_steps, cfg.log_every = f"text:{corpus}", 1, 4, 2
  said = []
  skipgram.train(cfg, str(tmp_path / "run"), log=said.append)
  assert any("skipped" in s and "non utf8" in s for s in said)
  recs = [json.loads(x) for x in open(tmp_path / "run" / "metrics.jsonl")]
  assert recs[-1]["data/skipped/non_utf8"] >= 2 and recs[-1]["data/skipped/empty_line"] >= 3


# ---- metrics -------------------------------------------------------------------------------
def test_tagging_metrics_hand_computed():
  truth = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 0]], bool)
  scores = np.array([[0.9, 0.8, 0.1], [0.2, 0.9, 0.5], [0.1, 0.2, 0.3], [0.7, 0.1, 0.6]])
  pred = metrics.annotate(scores, 1)  # tags 0, 1, 2, 0
  np.testing.assert_array_equal(pred.argmax(1), [0, 1, 2, 0])
  r = metrics.per_tag(pred, truth)
  # tag 0: predicted {0, 3}, correct {0} -> P 1/2, R 1/2; tag 1: predicted {1}, correct -> P 1,
  # R 1/2; tag 2: P 1, R 1
  assert r["precision"] == pytest.approx((0.5 + 1 + 1) / 3)
  assert r["recall"] == pytest.approx((0.5 + 0.5 + 1) / 3)
  p, rec = (2.5 / 3), (2 / 3)
  assert r["f1"] == pytest.approx(2 * p * rec / (p + rec))
  assert r["n_plus"] == 3 and r["tags"] == 3
  # a tag never predicted: precision 0, recall 0, not in N+
  r2 = metrics.per_tag(np.zeros_like(truth), truth)
  assert r2["precision"] == 0 and r2["n_plus"] == 0
  # AP: relevant at ranks 1 and 3 of 4 -> (1/1 + 2/3) / 2
  assert metrics.average_precision([0.9, 0.5, 0.4, 0.1], [1, 0, 1, 0]) == pytest.approx(
    (1 + 2 / 3) / 2
  )
  assert math.isnan(metrics.average_precision([1, 2], [0, 0]))
  # mAP over tags: tag 0 ranks images 0,3,1,2 (relevant 0,1 at ranks 1,3)
  ap0 = (1 + 2 / 3) / 2
  ap1 = (1 + 2 / 4) / 2  # tag 1: order 1,0,2,3 -> relevant 1 (rank 1), 3 (rank 4)
  ap2 = 1 / 3  # tag 2: order 3,1,2,0 -> relevant 2 at rank 3
  assert metrics.mean_average_precision(scores, truth) == pytest.approx((ap0 + ap1 + ap2) / 3)


# ---- TagProp / JEC -------------------------------------------------------------------------
def _planted(n=600, seed=0):
  """Tags are a function of the cluster an image's feature A lies in; feature B is noise."""
  rng = np.random.default_rng(seed)
  centers = rng.normal(size=(8, 5)) * 4
  cl = rng.integers(0, 8, n)
  a = centers[cl] + rng.normal(size=(n, 5)) * 0.5
  b = rng.normal(size=(n, 5)) * 4
  tag_of = rng.random((8, 6)) < 0.35
  tag_of[np.arange(8), np.arange(8) % 6] = True
  return a, b, tag_of[cl]


def test_tagprop_learns_the_informative_distance():
  a, b, y = _planted()
  tp = TagProp.fit([a[:500], b[:500]], y[:500], k=30, steps=300, learning_rate=0.05)
  w = tp.weights
  assert w[0] > 5 * w[1], w  # the distance that carries the neighbours' tags wins
  assert tp.history[-1][1] < tp.history[0][1]
  prob = tp.predict([a[500:], b[500:]])
  assert metrics.tagging_metrics(prob, y[500:], 2)["map"] > 0.95
  # the weights' direction is what matters: swap the blocks and the weights swap
  tp2 = TagProp.fit([b[:500], a[:500]], y[:500], k=30, steps=300, learning_rate=0.05)
  assert tp2.weights[1] > 5 * tp2.weights[0]


def test_jec_transfers_the_first_neighbours_tags():
  base_feats = np.array([[0.0], [1.0], [10.0]])
  tags = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 1]], bool)
  base = BaseDistances.fit([base_feats], ("l2",), pairs=50)
  s = jec_scores(base, [base_feats], tags, [np.array([[0.2], [9.0]])], k=2)
  assert s[0].argmax() == 0 and s[0, 0] > 2 > s[0, 1] > 0  # first neighbour's tag first
  assert s[1, 2] > 2 and s[1, 0] == 0  # image at 9: neighbours 10 (tag 2) then 1 (tags 1, 2)


# ---- Image2Vec and zero-shot ---------------------------------------------------------------
def test_mapping_losses_and_search():
  rng = np.random.default_rng(0)
  t = np.eye(4, 8, dtype=np.float32)  # four orthogonal tag vectors
  feats = rng.normal(size=(400, 10)).astype(np.float32)
  y = np.zeros((400, 4), bool)
  y[np.arange(400), np.argmax(feats[:, :4], 1)] = True
  for loss in mapping.LOSSES:
    m = mapping.Image2Vec.fit(
      feats, y, t, depth=1, hidden=32, loss=loss, steps=300, batch_size=64, learning_rate=1e-2
    )
    s = m.scores(feats, t)
    assert (s.argmax(1) == y.argmax(1)).mean() > 0.9, loss  # chance 0.25
    emb = m.embed(feats)
    top = mapping.search_by_word(emb, t[2], 10)
    assert y[top, 2].mean() > 0.8
  f = jnp.asarray([[1.0, 0.0], [0.0, 2.0]])
  tt = jnp.asarray([[1.0, 0.0], [0.0, 1.0]])
  yy = jnp.asarray([[1.0, 0.0], [1.0, 0.0]])
  assert float(mapping.loss_fn(f, yy, tt, "cosine", 0.1)) == pytest.approx(0.5)
  # hinge, image 1: max(0, 0.1 - 0 + 2) = 2.1; image 0: max(0, 0.1 - 1 + 0) = 0
  assert float(mapping.loss_fn(f, yy, tt, "hinge", 0.1)) == pytest.approx(1.05)


def test_zeroshot_split_never_leaks_a_heldout_tag(monkeypatch, tmp_path):
  pytest.importorskip("wordllama", reason="the offline word vectors ship in the wordllama wheel")
  import experiments.configs.image2vec as cfg
  from livermore_brain.image2vec import experiment

  train, _ = tagsets.digits("digits")
  seen, unseen = zeroshot.split(train.vocabulary, "three,seven")
  assert [train.vocabulary[i] for i in unseen] == ["three", "seven"]
  keep = zeroshot.training_rows(train.tags, unseen)
  assert not train.tags[keep][:, unseen].any() and keep.sum() < len(keep)
  with pytest.raises(ValueError):
    zeroshot.split(train.vocabulary, "missile")

  calls = []
  real_fit = mapping.Image2Vec.fit.__func__

  def spy(cls, feats, tags, tag_vectors, **kw):
    calls.append((np.asarray(feats), np.asarray(tags), np.asarray(tag_vectors)))
    return real_fit(cls, feats, tags, tag_vectors, **kw)

  monkeypatch.setattr(mapping.Image2Vec, "fit", classmethod(spy))
  c = cfg.get_config("tiny")
  c.zeroshot.heldout = "three,seven"
  c.mapping.losses = "cosine"
  c.mapping.steps = 20
  c.tagprop.steps = 10
  c.tagprop.distances = "l2"
  r = experiment.run(c, str(tmp_path), ("image2vec", "tagprop"), log=lambda *_: None)
  wv = wordvec.wordllama_vectors()
  held = np.stack([wv.lookup("three"), wv.lookup("seven")])
  assert len(calls) == 2  # all tags, then the zero-shot mapping
  feats_z, tags_z, vecs_z = calls[1]
  assert tags_z.shape[1] == len(r["vocabulary"]) - 2 and vecs_z.shape[0] == tags_z.shape[1]
  for v in held:  # no held-out tag vector among the training targets
    assert not np.any(np.all(np.isclose(vecs_z, v), axis=1))
  assert len(feats_z) == r["zeroshot"]["train_images"] == int(keep.sum())
  # every training image of the zero-shot mapping is one that carries no held-out tag
  pix = train.images.reshape(len(train.images), -1)
  allowed = {p.tobytes() for p in pix[keep]}
  assert all(f.astype(pix.dtype).tobytes() in allowed for f in feats_z)
  z = r["zeroshot"]["rows"]
  assert z["TagProp"]["recall"] == 0 and set(z) >= {
    "Image2Vec (cosine)",
    "ConSE (TagProp probabilities)",
  }
  assert os.path.exists(tmp_path / "search.png") and os.path.exists(tmp_path / "zeroshot.md")


def test_yfcc_text_and_tag_set_from_the_metadata_format(tmp_path):
  from livermore_brain.data import fixtures

  fixtures.write_yfcc_fixture(str(tmp_path))
  meta = str(tmp_path / "yfcc_25.tsv")
  with open(meta, "rb") as f:
    first = next(line for line in f if b"Sunset" in line)
  # user tags (a multi-word tag becomes its words), then title, then description, URL-decoded
  assert text.yfcc_document(first) == [
    "sunset", "new", "york", "beach", "sunset", "over", "the", "bay", "a", "quoted", "line", "and",
    "more",
  ]  # fmt: skip
  docs = list(text.documents(f"yfcc100m:{meta}"))
  assert any("café" in d for d in docs) and all(d for d in docs)
  train, test = tagsets.yfcc(
    meta, str(tmp_path / "images"), 16, vocabulary_size=3, test_fraction=0.34
  )
  assert train.vocabulary == ("sunset", "beach", "nyc")  # by count: 4, 3, 2
  # photos 1001, 1002, 1004, 1005 (flat layout), 1006 (gray), 1008 carry one of them and decode;
  # 1009 ("broken") is truncated and carries none anyway
  assert len(train.images) + len(test.images) == 6 and len(test.images) == 2
  assert train.images.shape[1:] == (16, 16, 3) and train.tags.any(1).all()


def test_column_zscore_changes_annotation_not_retrieval():
  truth = np.array([[1, 0], [0, 1], [0, 1]], bool)
  s = np.array([[0.9, 0.1], [0.8, 0.3], [0.7, 0.2]])  # tag 0 is a hub: every image's top tag
  assert metrics.annotate(s, 1)[:, 0].all()
  z = zeroshot.zscore_columns(s)
  np.testing.assert_allclose(z.mean(0), 0, atol=1e-12)
  np.testing.assert_allclose(z.std(0), 1)
  np.testing.assert_array_equal(metrics.annotate(z, 1).argmax(1), [0, 1, 1])  # = truth
  assert metrics.mean_average_precision(z, truth) == metrics.mean_average_precision(s, truth)
  assert metrics.per_tag(metrics.annotate(z, 1), truth)["f1"] == 1.0


def test_shifted_tags_control_breaks_the_correspondence():
  truth = np.eye(3, dtype=bool)[[0, 1, 2, 0, 1, 2]]
  perfect = truth.astype(float) + 0.01 * np.arange(3)  # right tag first on every image
  assert metrics.tagging_metrics(perfect, truth, 1)["f1"] == 1.0
  control = zeroshot.shifted_tags_control(perfect, truth, 1)  # every image gets a wrong tag
  assert control["f1"] == 0.0 and control["n_plus"] == 0
