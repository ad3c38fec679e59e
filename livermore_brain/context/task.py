"""Context prediction as a `Task`: classify how patches of one image are arranged.

Reads ``arrangement`` (``pair`` | ``triple``, `context.arrangements`), ``context`` (the patch
geometry and the guards of `context.patches`), ``model`` (``arch`` in `convnets.ARCHS`, its
preset sections, ``embed`` and ``hidden``), ``optimizer``, ``eval`` and ``seed`` of an
experiment config (`experiments/configs/context.py`). Batches carry whole images only (no
labels: the task makes its own); the jitted step draws the patches and their labels from them
on the device with a key folded from ``(seed, step)`` — a resumed run draws the same patches —
then runs the shared-weight towers and the fused head under cross-entropy.

The state is the supervised family's (`supervised.task.TrainState`: flax ``params``, batch-norm
``batch_stats``, optimizer state), sharded the same way (logical axes through the rules table:
batch over ``data``, the wide fully connected layers over ``model``); batch norm reduces over
every patch of the global batch.

Evaluation: every ``eval_every`` steps and at the end, arrangement accuracy and loss on held-out
images (``eval.source``, e.g. ``builtin:test``): ``eval.batches`` batches of the source read from
its start through the training stages (the same random crops every time), ``eval.draws``
arrangements drawn per image with fixed keys — the same held-out samples at every evaluation.
"""

from __future__ import annotations

import types

import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh

from livermore_brain import sharding as shd
from livermore_brain.context import arrangements, patches
from livermore_brain.context.model import ContextNet
from livermore_brain.data.spec import InputSpec
from livermore_brain.models import convnets
from livermore_brain.supervised.task import (
  TrainState,
  init_train_state,
  init_with_rbg,
  train_state_shardings,
)
from livermore_brain.train import config_ranges as cr
from livermore_brain.train import optim
from livermore_brain.train.task import Task

HEADS = ("joint", "factored")
EVAL_KEY = 0x5EED  # folded into the seed for the held-out draws (never a training key)


def geometry(config) -> patches.Geometry:
  c = config.context
  return patches.Geometry(int(c.patch), int(c.gap), int(c.jitter))


def guards(config) -> patches.Guards:
  c = config.context
  return patches.Guards(
    color=str(c.color),
    downsample_prob=float(c.downsample_prob),
    downsample_min=float(c.downsample_min),
    aperture=int(c.aperture),
  )


class ContextTask(Task):
  family = "context"
  config_ranges = types.MappingProxyType({
    "context.patch": cr.POSITIVE,
    "context.gap": cr.NON_NEGATIVE,
    "context.jitter": cr.NON_NEGATIVE,
    "context.image_size": cr.Range(lo=1, also=(0,)),  # 0: 3 patches + 2 gaps + 2 jitters
    "context.downsample_prob": cr.Range(lo=0, hi=1),
    "context.downsample_min": cr.Range(lo=0, hi=1, lo_open=True),
    "context.aperture": cr.NON_NEGATIVE,
    "eval.batches": cr.POSITIVE,
    "eval.draws": cr.POSITIVE,
    "model.embed": cr.POSITIVE,
    "model.hidden": cr.POSITIVE,
  })  # fmt: skip

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    self.table = arrangements.get(str(config.arrangement))
    self.geom = geometry(config)
    self.guards = guards(config)
    c = config.context
    side = int(c.image_size) or self.geom.min_side
    if side < self.geom.min_side:
      raise ValueError(
        f"context.image_size={side} is smaller than the grid needs ({self.geom.min_side} = 3 x "
        f"patch + 2 x gap + 2 x jitter); use 0 (auto) or at least {self.geom.min_side}"
      )
    self.channels = int(c.channels)
    self.input_spec = InputSpec((side, side, self.channels), ("image",))
    m = config.model
    self.arch = str(m.arch)
    self.tower = convnets.build(self.arch, m, int(m.embed))
    if self.arch != "alexnet":  # the AlexNet-style tower flattens its last map already
      self.tower = self.tower.clone(global_pool=str(m.get("tower_pool", "global")) == "global")
    self.head = str(c.get("head", "joint"))
    if self.head not in HEADS:
      raise ValueError(f"context.head={self.head!r}: choose one of {', '.join(HEADS)}")
    t = self.table
    factored = self.head == "factored" and t.rotations > 1
    outputs = t.num_base + t.rotations if factored else t.num_classes
    self.model = ContextNet(self.tower, outputs, int(m.hidden))
    p = self.geom.patch
    self.patch_shape = (p, p, self.channels)
    self.tx = optim.make_optimizer(config.optimizer, int(config.num_steps))
    self.seed = int(config.seed)
    self._boxed = convnets.abstract_variables(
      self.model, (1, self.table.num_patches, p, p, self.channels)
    )
    self._step = None
    self._eval = None

  # ---- state ------------------------------------------------------------------------------
  def _init(self, key):
    x = jnp.zeros((1, self.table.num_patches, *self.patch_shape))
    return init_train_state(self.model, self.tx, key, x)

  def abstract_state(self):
    return jax.eval_shape(self._init, jax.random.key(0))

  def state_shardings(self, mesh: Mesh, rules):
    return train_state_shardings(mesh, self._boxed, rules, self.tx, self.abstract_state())

  def init_state(self, key, mesh: Mesh, shardings):
    return init_with_rbg(self._init, key, shardings)  # as the supervised family

  def describe(self) -> str:
    n_tower = convnets.param_count(self.tower, (1, *self.patch_shape))
    n_all = convnets.param_count(self.model, (1, self.table.num_patches, *self.patch_shape))
    mflops = convnets.flops(self.tower, (1, *self.patch_shape)) / 1e6
    g, t = self.geom, self.table
    return (
      f"context prediction, {t.name}: {t.num_patches} patches, {t.num_classes} classes "
      f"({t.num_base} arrangements x {t.rotations} rotation(s); chance {1 / t.num_classes:.3f})\n"
      f"patch {g.patch}, gap {g.gap}, jitter {g.jitter} in {self.input_shape[0]}x"
      f"{self.input_shape[1]}x{self.channels} images; guards: colour {self.guards.color}, "
      f"downsample p={self.guards.downsample_prob} to >= {self.guards.downsample_min}, aperture "
      f"{self.guards.aperture if t.num_patches >= 3 else 0}\n"
      f"tower {self.arch}: {n_tower:,} parameters, {mflops:,.1f} MFLOP/patch forward, exported "
      f"layers {', '.join(self.feature_layers())}; whole net {n_all:,} parameters"
    )

  # ---- patches, loss, step ----------------------------------------------------------------
  def draw(self, key, images, augment: bool = True) -> dict:
    """Patches ``(B, K, P, P, C)`` and labels of one arrangement per image (`patches.sample`),
    with the guards applied when ``augment``; deterministic in ``key``."""
    k_s, k_a = jax.random.split(key)
    c = self.config.context
    s = patches.sample(
      k_s, images, self.table, self.geom, bool(c.flip), str(c.get("frame", "upright"))
    )
    if augment:
      s["patches"] = patches.augment(k_a, s["patches"], self.guards)
    return s

  def loss_and_logits(self, params, batch_stats, x, labels, train: bool):
    variables = {"params": params, "batch_stats": batch_stats}
    if train:
      logits, new = self.model.apply(variables, x, train=True, mutable=["batch_stats"])
      batch_stats = new["batch_stats"]
    else:
      logits = self.model.apply(variables, x, train=False)
    logits = self.joint_log_probs(logits)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return loss, logits, batch_stats

  def joint_log_probs(self, out: jax.Array) -> jax.Array:
    """The network's output as logits over the table's classes. ``joint``: they are the output.
    ``factored``: the output is ``num_base`` arrangement logits then ``rotations`` rotation
    logits; the class ``rotation * num_base + base`` gets ``log p(base) + log p(rotation)``, so
    the cross-entropy over classes is the sum of the two heads' cross-entropies, comparable with
    the joint head's (both start at ln num_classes)."""
    t = self.table
    if self.head == "joint" or t.rotations == 1:
      return out
    arr = jax.nn.log_softmax(out[:, : t.num_base])
    rot = jax.nn.log_softmax(out[:, t.num_base :])
    return (rot[:, :, None] + arr[:, None, :]).reshape(out.shape[0], t.num_classes)

  def hits(self, logits, labels) -> dict[str, jax.Array]:
    """Per-sample hits: the class, and its arrangement and rotation parts separately."""
    pred = jnp.argmax(logits, -1)
    (pa, pr), (la, lr) = self.table.split(pred), self.table.split(labels)
    return {"accuracy": pred == labels, "arrangement": pa == la, "rotation": pr == lr}

  def step_fn(self, step: int, mesh: Mesh, shardings, rules):
    if self._step is not None:
      return self._step
    base = jax.random.key(self.seed)

    def train_step(state: TrainState, batch: dict):
      s = self.draw(jax.random.fold_in(base, state.step), batch["image"])

      def f(params):
        loss, logits, stats = self.loss_and_logits(
          params, state.batch_stats, s["patches"], s["label"], True
        )
        return jnp.mean(loss), (logits, stats)

      (loss, (logits, stats)), grads = jax.value_and_grad(f, has_aux=True)(state.params)
      updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
      params = optax.apply_updates(state.params, updates)
      new = state.replace(
        step=state.step + 1, params=params, batch_stats=stats, opt_state=opt_state
      )
      out = {"train/loss": loss}
      for k, v in self.hits(logits, s["label"]).items():
        if k == "accuracy" or self.table.rotations > 1:
          out[f"train/{k}" if k == "accuracy" else f"train/{k}_accuracy"] = jnp.mean(v)
      return new, out

    self._step = self.jit_step(train_step, mesh, shardings, rules)
    return self._step

  # ---- held-out evaluation ----------------------------------------------------------------
  def setup(self, mesh: Mesh, rules, workdir: str, pipeline) -> None:
    src = str(self.config.eval.get("source", "") or "")
    self._eval = HeldOut(self, src, mesh, rules, workdir) if src else None

  def evaluate(self, state, step: int) -> dict[str, float]:
    return {} if self._eval is None else self._eval(state)

  # ---- features ---------------------------------------------------------------------------
  def feature_layers(self) -> tuple[str, ...]:
    """The tower's sown maps, ``logits`` (its fully connected embedding) left out."""
    return tuple(n for n in self.tower.feature_layers() if n != "logits")


class HeldOut:
  """Arrangement accuracy and mean loss on a fixed set of held-out samples (see the module)."""

  def __init__(self, task: ContextTask, source: str, mesh: Mesh, rules, workdir: str):
    from livermore_brain import data as data_lib

    cfg = ml_collections.ConfigDict(task.config.data.to_dict())
    cfg.source = source
    ev = task.config.eval
    self.batch = int(ev.batch_size)
    self.batches = int(ev.batches)
    self.draws = int(ev.draws)
    self.rotations = task.table.rotations
    self.pipe = data_lib.make_pipeline(
      cfg,
      task.input_spec,
      global_batch=self.batch,
      seed=task.seed + EVAL_KEY,
      process_index=jax.process_index(),
      process_count=jax.process_count(),
      workdir=workdir,
    )
    self.bsh = task.batch_shardings(mesh, rules)
    base = jax.random.key(task.seed + EVAL_KEY)

    def counts(params, batch_stats, images, i):
      def one(d):
        s = task.draw(jax.random.fold_in(base, i * 1000 + d), images)
        loss, logits, _ = task.loss_and_logits(params, batch_stats, s["patches"], s["label"], False)
        h = {k: jnp.sum(v) for k, v in task.hits(logits, s["label"]).items()}
        return h, jnp.sum(loss)

      hits, losses = jax.lax.map(one, jnp.arange(self.draws))
      return jax.tree.map(jnp.sum, hits), jnp.sum(losses)

    self.counts = jax.jit(counts, out_shardings=shd.replicated(mesh))

  def __call__(self, state) -> dict[str, float]:
    from livermore_brain import distributed

    correct, total = {}, 0.0
    it = self.pipe.iterate(start_batch=0)
    try:
      for i in range(self.batches):
        images = distributed.global_batch(next(it)["image"], self.bsh["image"])
        c, s = self.counts(state.params, state.batch_stats, images, i)
        correct = {k: correct.get(k, 0.0) + float(v) for k, v in c.items()}
        total += float(s)
    finally:
      it.close()
    n = self.batch * self.batches * self.draws
    out = {"eval/accuracy": correct["accuracy"] / n, "eval/loss": total / n}
    if self.rotations > 1:  # the two parts of a triple label, each against its own chance
      out["eval/arrangement_accuracy"] = correct["arrangement"] / n
      out["eval/rotation_accuracy"] = correct["rotation"] / n
    return out


def load_features(workdir: str, step: int | None = None, devices=None, mesh=None):
  """`context.features.TowerFeatures` of the run in ``workdir`` (`livermore_brain.families`)."""
  from livermore_brain.context import features

  return features.TowerFeatures.load(workdir, step=step, devices=devices, mesh=mesh)
