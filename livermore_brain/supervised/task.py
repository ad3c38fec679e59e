"""Supervised classification as a `Task`: the report's ResCeption backbone and its twins.

Reads ``model`` (``arch`` in `convnets.ARCHS`, ``num_classes`` and the architecture sections of a
`convnets.PRESETS` entry), ``optimizer``, ``eval`` and ``seed`` of an experiment config
(`experiments/configs/resception.py`). The state carries the flax ``params`` and the batch-norm
``batch_stats`` (so both are checkpointed and restored exactly); dropout keys are
``fold_in(seed, step)``, so a resumed run draws the same masks.

Sharding. Every parameter carries logical axis names (`layers.conv_blocks`), resolved by the
experiment's rules table: by default the batch is split over ``data`` and the wide fully
connected layers over ``model``. Batch norm under data parallelism: the step is one ``jax.jit``
over global arrays, so the batch mean and variance are reduced over the whole global batch —
across the ``data`` axis — by the partitioner (tested: 1x1 and 2x4 meshes give the same update).

Evaluation: every ``eval_every`` steps and at the end, accuracy and loss on the held-out
``eval.source`` (e.g. ``digits:test``), read through the training pipeline's stages (crops and
augmentations off), every held-out image exactly once.
"""

from __future__ import annotations

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding

from livermore_brain import sharding as shd
from livermore_brain.data.spec import InputSpec
from livermore_brain.models import convnets
from livermore_brain.train import optim
from livermore_brain.train.task import Task


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: dict
  batch_stats: dict
  opt_state: optax.OptState


def build_model(config: ml_collections.ConfigDict) -> nn.Module:
  return convnets.build(config.model.arch, config.model, int(config.model.num_classes))


def init_train_state(model: nn.Module, tx, key, example) -> TrainState:
  """Step 0 of a flax convnet family: ``model``'s variables at ``example``, its optimizer state."""
  variables = nn.unbox(model.init(key, example, train=False))
  params = variables["params"]
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    batch_stats=variables.get("batch_stats", {}),
    opt_state=tx.init(params),
  )


def train_state_shardings(mesh: Mesh, boxed, rules, tx, abstract: TrainState) -> TrainState:
  """`TrainState` shardings: variables by their logical axes, optimizer state like its params."""
  var_sh = shd.variable_shardings(mesh, boxed, rules)
  rep = shd.replicated(mesh)
  sh = TrainState(
    step=rep,
    params=var_sh["params"],
    batch_stats=var_sh.get("batch_stats", {}),
    opt_state=optim.opt_state_shardings(tx, abstract.opt_state, var_sh["params"], rep),
  )
  shd.check_divisible(mesh, abstract.params, sh.params, what="params")
  return sh


def init_with_rbg(init, key, shardings):
  """``jit(init)`` with an `rbg` key derived from ``key``, placed at ``shardings``.

  flax draws every parameter with its own random call; with threefry keys XLA:CPU (jaxlib 0.10)
  takes seconds per call to compile them (25 s for the tiny net), with the `rbg` generator 5 s.
  The rbg key is a fixed function of ``key``, so init stays deterministic."""

  def rbg_init(key):
    return init(jax.random.wrap_key_data(jnp.tile(jax.random.key_data(key), 2), impl="rbg"))

  return jax.jit(rbg_init, out_shardings=shardings)(key)


class SupervisedTask(Task):
  family = "supervised"

  def __init__(self, config: ml_collections.ConfigDict):
    m = config.model
    self.config = config
    self.arch = str(m.arch)
    self.model = build_model(config)
    h, w, c = (int(v) for v in m.input_shape)
    self.input_spec = InputSpec((h, w, c), ("image", "label"))
    self.tx = optim.make_optimizer(config.optimizer, int(config.num_steps))
    self.seed = int(config.seed)
    self._boxed = convnets.abstract_variables(self.model, (1, h, w, c))
    self._step = None
    self._eval = None

  # ---- state ------------------------------------------------------------------------------
  def _init(self, key):
    return init_train_state(self.model, self.tx, key, jnp.zeros((1, *self.input_shape)))

  def abstract_state(self):
    return jax.eval_shape(self._init, jax.random.key(0))

  def state_shardings(self, mesh: Mesh, rules):
    return train_state_shardings(mesh, self._boxed, rules, self.tx, self.abstract_state())

  def init_state(self, key, mesh: Mesh, shardings):
    return init_with_rbg(self._init, key, shardings)

  def describe(self) -> str:
    h, w, c = self.input_shape
    n = convnets.param_count(self.model, (1, h, w, c))
    mflops = convnets.flops(self.model, (1, h, w, c)) / 1e6
    return (
      f"{self.arch}: {n:,} parameters, {mflops:,.1f} MFLOP/image forward, input {h}x{w}x{c}, "
      f"{self.config.model.num_classes} classes, exported layers "
      f"{', '.join(self.model.feature_layers())}"
    )

  # ---- step -------------------------------------------------------------------------------
  def loss_and_logits(self, params, batch_stats, images, labels, train: bool, key=None):
    variables = {"params": params, "batch_stats": batch_stats}
    if train:
      logits, new = self.model.apply(
        variables, images, train=True, mutable=["batch_stats"], rngs={"dropout": key}
      )
      batch_stats = new["batch_stats"]
    else:
      logits = self.model.apply(variables, images, train=False)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return loss, logits, batch_stats

  def step_fn(self, step: int, mesh: Mesh, shardings, rules):
    if self._step is not None:
      return self._step
    base = jax.random.key(self.seed)

    def train_step(state: TrainState, batch: dict):
      key = jax.random.fold_in(base, state.step)

      def f(params):
        loss, logits, stats = self.loss_and_logits(
          params, state.batch_stats, batch["image"], batch["label"], True, key
        )
        return jnp.mean(loss), (logits, stats)

      (loss, (logits, stats)), grads = jax.value_and_grad(f, has_aux=True)(state.params)
      updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
      params = optax.apply_updates(state.params, updates)
      acc = jnp.mean((jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32))
      new = state.replace(
        step=state.step + 1, params=params, batch_stats=stats, opt_state=opt_state
      )
      return new, {"train/loss": loss, "train/accuracy": acc}

    self._step = self.jit_step(train_step, mesh, shardings, rules)
    return self._step

  # ---- held-out evaluation ----------------------------------------------------------------
  def setup(self, mesh: Mesh, rules, workdir: str, pipeline) -> None:
    n = pipeline.num_classes
    if n is None:
      raise ValueError(
        f"supervised training needs labels; {pipeline.source.describe()} has none (use "
        f"digits, mnist, folder:<dir with one subfolder per class> or tfds:<name>)"
      )
    if n > int(self.config.model.num_classes):
      raise ValueError(
        f"the data has {n} classes but model.num_classes={self.config.model.num_classes}; "
        f"pass --config.model.num_classes={n}"
      )
    src = str(self.config.eval.get("source", "") or "")
    self._eval = None
    if src:
      self._eval = HeldOut(self, src, mesh, rules, workdir)

  def evaluate(self, state, step: int) -> dict[str, float]:
    return {} if self._eval is None else self._eval(state)

  # ---- features ---------------------------------------------------------------------------
  def feature_layers(self) -> tuple[str, ...]:
    return tuple(self.model.feature_layers())


class HeldOut:
  """Accuracy and mean loss of the state on every image of a held-out source, once each."""

  def __init__(self, task: SupervisedTask, source: str, mesh: Mesh, rules, workdir: str):
    from livermore_brain import data as data_lib

    cfg = ml_collections.ConfigDict(task.config.data.to_dict())
    cfg.source = source
    cfg.shuffle = False
    cfg.flip = False
    cfg.color_jitter = 0.0
    if cfg.crop == "random":
      cfg.crop = "center"
    self.batch = int(task.config.eval.batch_size)
    self.pipe = data_lib.make_pipeline(
      cfg,
      task.input_spec,
      global_batch=self.batch,
      seed=task.seed,
      process_index=jax.process_index(),
      process_count=jax.process_count(),
      workdir=workdir,
    )
    self.n = int(self.pipe.source.num_items)
    self.task, self.mesh = task, mesh
    bsh = {
      k: NamedSharding(mesh, shd.logical_to_spec(a, rules)) for k, a in task.batch_axes().items()
    }
    self.bsh = dict(bsh, valid=bsh["label"])

    def counts(params, batch_stats, batch):
      loss, logits, _ = task.loss_and_logits(
        params, batch_stats, batch["image"], batch["label"], False
      )
      ok = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
      v = batch["valid"]
      return jnp.sum(ok * v), jnp.sum(loss * v)

    self.counts = jax.jit(counts, out_shardings=shd.replicated(mesh))

  def __call__(self, state) -> dict[str, float]:
    from livermore_brain import distributed

    correct = total_loss = 0.0
    it = self.pipe.iterate(start_batch=0, return_meta=True)
    try:
      for _ in range(-(-self.n // self.batch)):
        ex = next(it)
        local = {
          "image": ex["image"],
          "label": ex["label"],
          "valid": (ex["example"] < self.n).astype(np.float32),
        }
        batch = {k: distributed.global_batch(v, self.bsh[k]) for k, v in local.items()}
        c, s = self.counts(state.params, state.batch_stats, batch)
        correct, total_loss = correct + float(c), total_loss + float(s)
    finally:
      it.close()
    return {"eval/accuracy": correct / self.n, "eval/loss": total_loss / self.n}


def load_features(workdir: str, step: int | None = None, devices=None, mesh=None):
  """`supervised.features.ConvFeatures` of the run in ``workdir`` (`livermore_brain.families`)."""
  from livermore_brain.supervised import features

  return features.ConvFeatures.load(workdir, step=step, devices=devices, mesh=mesh)
