"""Skip-gram with negative sampling (Mikolov et al. 2013) in JAX, sharded by the rules table.

For a (center ``c``, context ``o``) pair and ``K`` negatives ``n_k`` drawn from the unigram^0.75
table, with input vectors ``v`` and output vectors ``u``::

    loss = -log sigma(u_o . v_c) - sum_k log sigma(-u_{n_k} . v_c)     (mean over the batch)

Both tables are ``(V, D)`` with logical axes ``("vocab", "embed")``: the rules table splits
``vocab`` over ``model`` (at YFCC100M scale the tables are millions of rows), and the pairs are
split over ``data``. Rows are padded to a multiple of ``pad_vocab_to`` (the padding rows are never
drawn), so one state shape — and, since JAX's random bits do not depend on sharding, one
initialization — serves every mesh. Negatives are drawn inside the step from a key folded with
the step number, so a run is a pure function of its seed and resumes exactly.

Not a `train.task.Task` family: the loop's input pipeline and `InputSpec` are for image batches
(tf.data stages, image shapes); text pairs come from `text.pair_batches` (numpy, a few lines), so
word vectors have their own small jitted loop with the platform's verified Orbax checkpoints
(`train.checkpoint.Checkpointer`) and metric writer.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding

from livermore_brain import sharding as shd
from livermore_brain.image2vec import text, wordvec

AXES = {"in": ("vocab", "embed"), "out": ("vocab", "embed")}


class State(NamedTuple):
  step: jax.Array
  params: dict
  opt_state: Any


def padded(v: int, multiple: int) -> int:
  return -(-int(v) // max(int(multiple), 1)) * max(int(multiple), 1)


def init_params(key: jax.Array, rows: int, dim: int) -> dict:
  """word2vec's initialization: input vectors uniform in +-0.5/D, output vectors zero."""
  return {
    "in": jax.random.uniform(key, (rows, dim), jnp.float32, -0.5 / dim, 0.5 / dim),
    "out": jnp.zeros((rows, dim), jnp.float32),
  }


def loss_fn(params: dict, center: jax.Array, context: jax.Array, negatives: jax.Array):
  """Mean negative-sampling loss of ``B`` pairs with ``(B, K)`` negatives."""
  v = params["in"][center]  # (B, D)
  pos = jnp.sum(v * params["out"][context], -1)
  neg = jnp.einsum("bd,bkd->bk", v, params["out"][negatives])
  return jnp.mean(jax.nn.softplus(-pos) + jnp.sum(jax.nn.softplus(neg), -1))


def make_optimizer(cfg: ml_collections.ConfigDict, batch_size: int, num_steps: int):
  """``sgd``: word2vec's per-pair learning rate decayed linearly to 1e-4 of itself (scaled by the
  batch size, since the loss is a batch mean); ``adam``/``adagrad``: the rate as given."""
  name, lr = cfg.name, float(cfg.learning_rate)
  if name == "sgd":
    sched = optax.linear_schedule(lr * batch_size, lr * batch_size * 1e-4, max(num_steps, 1))
    return optax.sgd(sched)
  if name == "adam":
    return optax.adam(optax.linear_schedule(lr, lr * 0.01, max(num_steps, 1)))
  if name == "adagrad":
    return optax.adagrad(lr)
  raise ValueError(f"optimizer {name!r}: use sgd, adam or adagrad")


class SkipGram:
  """The model, optimizer and sharded, jitted step for one vocabulary size and config."""

  def __init__(self, config: ml_collections.ConfigDict, vocab_size: int, mesh: Mesh):
    self.config, self.mesh = config, mesh
    self.vocab_size = int(vocab_size)
    self.rows = padded(vocab_size, config.pad_vocab_to)
    self.dim = int(config.dim)
    self.rules = shd.rules_from_config(config.get("rules"))
    self.tx = make_optimizer(config.optimizer, config.batch_size, config.num_steps)
    if config.batch_size % mesh.shape["data"]:
      raise ValueError(
        f"batch_size {config.batch_size} is not divisible by the data axis ({mesh.shape['data']})"
      )

  # ---- state -------------------------------------------------------------------------------
  def abstract_state(self) -> State:
    def make():
      p = init_params(jax.random.key(0), self.rows, self.dim)
      return State(jnp.zeros((), jnp.int32), p, self.tx.init(p))

    return jax.eval_shape(make)

  def state_shardings(self) -> State:
    p = shd.named_shardings(self.mesh, AXES, self.rules)
    abstract = self.abstract_state()
    # Optimizer leaves shaped like a table follow its sharding; scalars are replicated.
    table = p["in"]
    opt = jax.tree.map(
      lambda a: table if a.shape == (self.rows, self.dim) else shd.replicated(self.mesh),
      abstract.opt_state,
    )
    shardings = State(shd.replicated(self.mesh), p, opt)
    shd.check_divisible(self.mesh, abstract, shardings, "word vectors: ")
    return shardings

  def init_state(self, key: jax.Array) -> State:
    def make():
      p = init_params(key, self.rows, self.dim)
      return State(jnp.zeros((), jnp.int32), p, self.tx.init(p))

    return jax.jit(make, out_shardings=self.state_shardings())()

  # ---- step --------------------------------------------------------------------------------
  def pair_sharding(self) -> NamedSharding:
    return shd.batch_sharding(self.mesh, self.rules, ndim=1)

  def step_fn(self, key: jax.Array, table_size: int):
    """Jitted ``(state, table, center, context) -> (state, loss)``; negatives from ``table``
    (replicated int32) at indices drawn with ``fold_in(key, step)``."""
    k, tx = int(self.config.negatives), self.tx
    sh, pairs = self.state_shardings(), self.pair_sharding()
    rep = shd.replicated(self.mesh)

    def step(state: State, table, center, context):
      draw = jax.random.fold_in(key, state.step)
      idx = jax.random.randint(draw, (center.shape[0], k), 0, table_size)
      negatives = jax.lax.with_sharding_constraint(table[idx], self.pair_sharding_2d())
      loss, grads = jax.value_and_grad(loss_fn)(state.params, center, context, negatives)
      updates, opt_state = tx.update(grads, state.opt_state, state.params)
      params = optax.apply_updates(state.params, updates)
      return State(state.step + 1, params, opt_state), loss

    return jax.jit(
      step, in_shardings=(sh, rep, pairs, pairs), out_shardings=(sh, rep), donate_argnums=0
    )

  def pair_sharding_2d(self) -> NamedSharding:
    return shd.batch_sharding(self.mesh, self.rules, ndim=2)

  def plan(self, table_size: int | None = None) -> dict:
    """Compile one step from abstract shapes on ``mesh`` (nothing allocated) and report XLA's
    per-device memory (`planner.analyze`) next to the tables' own size."""
    from livermore_brain import planner

    t = int(table_size or self.config.table_size)
    sh = self.state_shardings()
    state = jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), self.abstract_state(), sh
    )
    table = jax.ShapeDtypeStruct((t,), jnp.int32, sharding=shd.replicated(self.mesh))
    pairs = jax.ShapeDtypeStruct(
      (int(self.config.batch_size),), jnp.int32, sharding=self.pair_sharding()
    )
    compiled = self.step_fn(jax.random.key(0), t).lower(state, table, pairs, pairs).compile()
    out = planner.analyze(compiled, self.mesh)
    table_bytes = 2 * self.rows * self.dim * 4
    opt_bytes = sum(
      int(np.prod(a.shape)) * 4
      for a in jax.tree.leaves(self.abstract_state().opt_state)
      if a.ndim == 2
    )
    out.update(
      vocab=self.vocab_size,
      rows=self.rows,
      dim=self.dim,
      mesh=dict(self.mesh.shape),
      table_bytes_total=table_bytes,
      optimizer_bytes_total=opt_bytes,
      table_bytes_per_device=(table_bytes + opt_bytes) // self.mesh.shape["model"],
      negative_table_bytes=t * 4,
    )
    return out


# ---- training --------------------------------------------------------------------------------
def train(config: ml_collections.ConfigDict, workdir: str, devices=None, log=print) -> dict:
  """Train (or resume) word vectors from ``config.source`` into ``workdir``.

  Writes ``vocab.txt`` (built once: a resumed run keeps its ids), ``checkpoints/`` (verified
  Orbax), ``metrics.jsonl`` (step, loss, pairs/s), ``vectors.txt`` (word2vec text format, the
  input vectors) and ``summary.json`` (word similarity, nearest neighbours)."""
  from livermore_brain.train.checkpoint import Checkpointer, abstract_with_shardings

  os.makedirs(workdir, exist_ok=True)
  mesh = shd.make_mesh(config.get("mesh", ""), devices)
  skipped = Counter()  # bad corpus lines seen by the training stream, cumulative (metrics)
  docs = lambda: text.documents(config.source, config.get("max_docs") or None, skipped)
  vpath = os.path.join(workdir, "vocab.txt")
  if os.path.exists(vpath):
    vocab = text.Vocab.load(vpath)
  else:
    bad = Counter()
    vocab = text.Vocab.build(
      text.documents(config.source, config.get("max_docs") or None, bad),
      config.min_count, config.get("max_vocab") or None,
    )  # fmt: skip
    vocab.save(vpath)
    if bad:
      log(
        "corpus: skipped "
        + ", ".join(f"{n:,} {r.replace('_', ' ')}s" for r, n in sorted(bad.items()))
      )
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json(indent=2))
  model = SkipGram(config, len(vocab), mesh)
  table = text.negative_table(vocab.counts, int(config.table_size))
  log(
    f"word vectors: {len(vocab):,} words (min count {config.min_count}, "
    f"{int(vocab.counts.sum()):,} tokens), {config.dim}-d, tables {model.rows}x{model.dim} x2 "
    f"split over model={mesh.shape['model']}, batch {config.batch_size} pairs over "
    f"data={mesh.shape['data']}, {config.negatives} negatives, source {config.source}"
  )
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=2)
  sh = model.state_shardings()
  restored = ckpt.restore_latest_good(abstract_with_shardings(model.abstract_state(), sh))
  state = restored[0] if restored else model.init_state(jax.random.key(int(config.seed)))
  start = int(state.step)
  step = model.step_fn(jax.random.key(int(config.seed) + 1), len(table))
  table = jax.device_put(table, shd.replicated(mesh))
  batches = text.pair_batches(
    docs, vocab, batch_size=config.batch_size, window=config.window, sample=config.sample,
    seed=int(config.seed),
  )  # fmt: skip
  for _ in range(start):  # the stream is a pure function of the seed: skip what was seen
    next(batches)
  metrics = open(os.path.join(workdir, "metrics.jsonl"), "a")
  t0, done, loss = time.perf_counter(), 0, None
  for s in range(start, int(config.num_steps)):
    c, x = next(batches)
    pairs = model.pair_sharding()
    state, loss = step(state, table, jax.device_put(c, pairs), jax.device_put(x, pairs))
    done += 1
    if (s + 1) % config.log_every == 0 or s + 1 == config.num_steps:
      rate = done * config.batch_size / (time.perf_counter() - t0)
      rec = dict(step=s + 1, loss=float(loss), pairs_per_sec=round(rate, 1))
      rec.update({f"data/skipped/{r}": n for r, n in sorted(skipped.items())})
      metrics.write(json.dumps(rec) + "\n")
      metrics.flush()
      log(f"step {s + 1}/{config.num_steps} loss {float(loss):.4f} {rate:,.0f} pairs/s")
    if (s + 1) % config.checkpoint_every == 0 and s + 1 < config.num_steps:
      ckpt.save(s + 1, state)
  if start < int(config.num_steps):
    ckpt.save(int(config.num_steps), state)
  ckpt.close()
  metrics.close()
  vectors = to_vectors(vocab, state.params)
  vectors.save(os.path.join(workdir, "vectors.txt"))
  summary = evaluate(
    vectors, config.get("similarity", "wordsim353,simlex999"), config.get("queries", "")
  )
  summary.update(steps=int(config.num_steps), vocab=len(vocab), dim=model.dim,
                 seconds=round(time.perf_counter() - t0, 1))  # fmt: skip
  with open(os.path.join(workdir, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
  return summary


def to_vectors(vocab: text.Vocab, params: dict) -> wordvec.WordVectors:
  """The input vectors of the real (unpadded) rows, gathered to the host."""
  return wordvec.WordVectors(vocab.words, np.asarray(jax.device_get(params["in"]))[: len(vocab)])


def evaluate(
  vectors: wordvec.WordVectors, similarity: str = "", queries: str = "", k: int = 6
) -> dict:
  """Word-similarity correlation on each named list (`wordvec.similarity_pairs`) and the nearest
  neighbours of each query word (comma-separated)."""
  out = {"similarity": {}, "neighbours": {}}
  for name in [s for s in similarity.split(",") if s]:
    try:
      out["similarity"][name] = wordvec.word_similarity(vectors, wordvec.similarity_pairs(name))
    except FileNotFoundError as e:  # the list's package is not installed: say so, go on
      out["similarity"][name] = {"error": str(e)}
  for q in [q.strip() for q in queries.split(",") if q.strip()]:
    if q in vectors:
      out["neighbours"][q] = [(w, round(s, 3)) for w, s in vectors.nearest(q, k)]
  return out
