"""GANs with curriculum learning as a `Task`: both players in one train state, one jitted step.

Reads ``model`` (``g_widths``, ``d_widths``, ``latent_dim``, ``input_shape``, ``loss``),
``optimizer`` (the generator's) and ``d_optimizer`` (the discriminator's), ``curriculum`` (a
`curriculum` preset or inline spec) with ``curriculum_rule`` (equilibrium band, patience, EMA),
``eval`` and ``seed`` of an experiment config (`experiments/configs/gan.py`).

The state holds both networks' ``params`` and batch-norm ``batch_stats``, both optimizer states,
and the curriculum's position (stage, its start step, the EMA of D's accuracy and the count of
in-band steps), so a checkpoint restores the game exactly, also across a stage boundary.

One step (alternating updates, as in DCGAN): draw ``z`` and noise from ``fold_in(seed, step)``;
real images average-pooled to the stage's resolution and mapped to [-1, 1]; both real and fake
blurred and noised by the stage's (traced) amounts; D updated on ``[real; fake]`` (one batch, so
batch norm sees both, with statistics reduced over the global batch); then G updated through the
*updated* D. A player whose turn it is not (``d_every``/``g_every``) keeps its state bit for bit.
Only the resolution is static: the step compiles once per resolution level.

Logged every ``log_every`` steps (means over the window): ``d/loss``, ``g/loss``,
``d/acc_real``, ``d/acc_fake``, ``d/accuracy``, ``d/grad_norm``, ``g/grad_norm``,
``quality/diversity`` (fake vs real spread in the fixed feature space of `quality`; -> 0 under
mode collapse) and ``curriculum/*`` (stage, resolution, alpha, noise, blur, smooth). Evaluation
(`evaluation`; ``eval_every`` and at the end): ``eval/fd`` — Frechet distance of ``eval.num_samples`` fixed-
latent samples to as many held-out images (``eval.source``) in that feature space — and
``eval/diversity``; the references ``eval/fd_train`` (training images) and ``eval/fd_noise``
(uniform noise) once. Checkpoints write ``samples.png`` (64 fixed latents; a copy per step under
``samples/``) and the last one ``interpolation.png``.
"""

from __future__ import annotations

import os
import types

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh

from livermore_brain import sharding as shd
from livermore_brain.data.spec import InputSpec
from livermore_brain.gan import evaluation, losses, nets, quality
from livermore_brain.gan.curriculum import Schedule
from livermore_brain.train import config_ranges as cr
from livermore_brain.train import optim
from livermore_brain.train.task import Task


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  stage: jax.Array
  stage_start: jax.Array
  acc_ema: jax.Array
  in_band: jax.Array
  g_params: dict
  g_stats: dict
  d_params: dict
  d_stats: dict
  g_opt: optax.OptState
  d_opt: optax.OptState


def gaussian_blur(x: jax.Array, sigma, radius: int = 2) -> jax.Array:
  """Separable Gaussian blur of (B, H, W, C) with a traced ``sigma`` (pixels); ``sigma -> 0`` is
  the identity (the kernel collapses to its centre tap). Edges: reflect padding."""
  t = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  s = jnp.maximum(sigma, 1e-3)
  k = jnp.exp(-0.5 * (t / s) ** 2)
  k = k / jnp.sum(k)
  xp = jnp.pad(x, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode="reflect")
  h, w = x.shape[1], x.shape[2]
  y = sum(k[i] * xp[:, i : i + h, :, :] for i in range(2 * radius + 1))
  return sum(k[i] * y[:, :, i : i + w, :] for i in range(2 * radius + 1))


def upsample(x: jax.Array, f: int) -> jax.Array:
  """Nearest-neighbour ``f x`` upsampling of (B, H, W, C)."""
  return x if f == 1 else jnp.repeat(jnp.repeat(x, f, axis=1), f, axis=2)


class GanTask(Task):
  family = "gan"
  config_ranges = types.MappingProxyType({
    "curriculum_rule.band": cr.Range(lo=0, hi=0.5, lo_open=True),  # |D accuracy - 0.5| allowed
    "curriculum_rule.ema": cr.FRACTION,
    "curriculum_rule.patience": cr.POSITIVE,
    "eval.num_samples": cr.POSITIVE,
    "model.latent_dim": cr.POSITIVE,
  })  # fmt: skip

  def __init__(self, config: ml_collections.ConfigDict):
    m = config.model
    self.config = config
    self.loss = losses.check(str(m.loss))
    h, w, c = (int(v) for v in m.input_shape)
    if h != w:
      raise ValueError(f"the GAN needs square images, got model.input_shape={tuple(m.input_shape)}")
    if config.data.get("normalize", False) or config.data.get("whiten", False):
      raise ValueError(
        "the GAN models images in [0, 1]: set data.normalize=False, data.whiten=False"
      )
    self.input_spec = InputSpec((h, w, c), ("image",))
    self.latent_dim = int(m.latent_dim)
    self.generator = nets.Generator(tuple(m.g_widths), channels=c)
    self.discriminator = nets.Discriminator(tuple(m.d_widths))
    self.max_level = len(tuple(m.g_widths)) - 1
    if nets.res_of(self.max_level) != h or len(tuple(m.d_widths)) != len(tuple(m.g_widths)):
      raise ValueError(
        f"model.g_widths and model.d_widths need one width per level 4, 8, ..., {h} "
        f"({int(np.log2(max(h, 4) / 4)) + 1} each)"
      )
    self.schedule = Schedule.from_config(
      str(config.curriculum), int(config.num_steps), h, config.get("curriculum_rule")
    )
    n = int(config.num_steps)
    self.g_tx = optim.make_optimizer(config.optimizer, n)
    self.d_tx = optim.make_optimizer(config.d_optimizer, n)
    self.seed = int(config.seed)
    self._boxed = {
      "g": jax.eval_shape(self._g_init, jax.random.key(0)),
      "d": jax.eval_shape(self._d_init, jax.random.key(0)),
    }
    self._steps: dict[int, object] = {}
    self._stage_now: tuple[int, int] | None = None  # (step, stage) read from the state
    self._eval = None
    self._sample_fns: dict[int, object] = {}

  # ---- state ------------------------------------------------------------------------------
  def _g_init(self, key):
    z = jnp.zeros((1, self.latent_dim))
    return self.generator.init(key, z, self.max_level, 1.0, train=False)

  def _d_init(self, key):
    x = jnp.zeros((1, *self.input_shape))
    return self.discriminator.init(key, x, self.max_level, 1.0, train=False)

  def _init(self, key):
    kg, kd = jax.random.split(key)
    g = nn.unbox(self._g_init(kg))
    d = nn.unbox(self._d_init(kd))
    return TrainState(
      step=jnp.zeros((), jnp.int32),
      stage=jnp.zeros((), jnp.int32),
      stage_start=jnp.zeros((), jnp.int32),
      acc_ema=jnp.ones((), jnp.float32),
      in_band=jnp.zeros((), jnp.int32),
      g_params=g["params"],
      g_stats=g.get("batch_stats", {}),
      d_params=d["params"],
      d_stats=d.get("batch_stats", {}),
      g_opt=self.g_tx.init(g["params"]),
      d_opt=self.d_tx.init(d["params"]),
    )

  def abstract_state(self):
    return jax.eval_shape(self._init, jax.random.key(0))

  def state_shardings(self, mesh: Mesh, rules):
    g = shd.variable_shardings(mesh, self._boxed["g"], rules)
    d = shd.variable_shardings(mesh, self._boxed["d"], rules)
    rep = shd.replicated(mesh)
    a = self.abstract_state()
    sh = TrainState(
      step=rep,
      stage=rep,
      stage_start=rep,
      acc_ema=rep,
      in_band=rep,
      g_params=g["params"],
      g_stats=g.get("batch_stats", {}),
      d_params=d["params"],
      d_stats=d.get("batch_stats", {}),
      g_opt=optim.opt_state_shardings(self.g_tx, a.g_opt, g["params"], rep),
      d_opt=optim.opt_state_shardings(self.d_tx, a.d_opt, d["params"], rep),
    )
    shd.check_divisible(mesh, a.g_params, sh.g_params, what="generator params")
    shd.check_divisible(mesh, a.d_params, sh.d_params, what="discriminator params")
    return sh

  def init_state(self, key, mesh: Mesh, shardings):
    # the rbg generator compiles flax's many per-parameter draws much faster on XLA:CPU than
    # threefry (see supervised.task); a fixed function of ``key``, so init stays deterministic
    def init(key):
      return self._init(jax.random.wrap_key_data(jnp.tile(jax.random.key_data(key), 2), impl="rbg"))

    return jax.jit(init, out_shardings=shardings)(key)

  def describe(self) -> str:
    count = lambda tree: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree["params"]))
    h, w, c = self.input_shape
    return (
      f"GAN ({self.loss} loss): generator {count(self._boxed['g']):,} parameters (widths "
      f"{tuple(self.config.model.g_widths)}, latent {self.latent_dim}), discriminator "
      f"{count(self._boxed['d']):,} (widths {tuple(self.config.model.d_widths)}), {h}x{w}x{c}; "
      f"exported layers {', '.join(self.feature_layers())}\n"
      f"curriculum {self.config.curriculum!r}:\n{self.schedule.describe()}"
    )

  def feature_layers(self) -> tuple[str, ...]:
    return self.discriminator.feature_layers()

  # ---- the curriculum's stage on the host -------------------------------------------------
  @property
  def _needs_sync(self) -> bool:
    """The host must read the stage from the state only when a criterion can move a resolution
    change; otherwise the stage is a pure function of the step."""
    return self.schedule.has_criteria and len(self.schedule.levels) > 1

  def before_step(self, state, step: int, log):
    if self._needs_sync:
      stage = int(jax.device_get(state.stage))
      if self._stage_now is not None and stage != self._stage_now[1]:
        log(f"curriculum: stage {stage} from step {step} ({self.schedule.resolution(stage)} px)")
      self._stage_now = (step, stage)
    return state

  def stage_of(self, step: int) -> int:
    if self._needs_sync and self._stage_now is not None and self._stage_now[0] == step:
      return self._stage_now[1]
    return self.schedule.stage_at(step)

  def plan_step(self) -> int:
    return self.schedule.starts()[-1]  # the full-resolution game

  # ---- step -------------------------------------------------------------------------------
  def generate(self, g_params, g_stats, z, level, alpha, train=True):
    """Images in [-1, 1] at ``level``'s resolution; with ``train`` batch norm uses the batch's
    statistics (also for sampling: DCGAN's practice) and the new running stats are returned."""
    out, new = self.generator.apply(
      {"params": g_params, "batch_stats": g_stats},
      z,
      level,
      alpha,
      train=True,
      mutable=["batch_stats"],
    )
    return out, new["batch_stats"]

  def discriminate(self, d_params, d_stats, x, level, alpha):
    out, new = self.discriminator.apply(
      {"params": d_params, "batch_stats": d_stats},
      x,
      level,
      alpha,
      train=True,
      mutable=["batch_stats"],
    )
    return out, new["batch_stats"]

  # What the one training step below reads from the family (the video GAN overrides these).
  def step_level(self, stage: int) -> int:
    """The network level (resolution; for clips, frames and resolution) of a stage's game."""
    return self.schedule.level(stage)

  def real_of(self, batch: dict, level: int) -> jax.Array:
    """The batch's real examples in [-1, 1], pooled to ``level``'s size."""
    full = self.input_shape[0]
    return nets.down(batch["image"] * 2.0 - 1.0, full // nets.res_of(level))

  def blur(self, x: jax.Array, sigma) -> jax.Array:
    return gaussian_blur(x, sigma)

  def diversity_view(self, x: jax.Array) -> jax.Array:
    """Examples at any level as full-size images for the fixed diversity features."""
    return upsample(x, self.input_shape[0] // x.shape[1])

  def extra_metrics(self, state, p: dict) -> dict:
    return {}

  def _train_step(self, level: int):
    sched, kind, base = self.schedule, self.loss, jax.random.key(self.seed)

    def train_step(state: TrainState, batch: dict):
      key = jax.random.fold_in(base, state.step)
      kz, kr, kf = jax.random.split(key, 3)
      p = sched.at(state.step, state.stage, state.stage_start)
      real = self.real_of(batch, level)
      b = real.shape[0]
      z = jax.random.normal(kz, (b, self.latent_dim))
      noisy = lambda x, k: self.blur(x, p["blur"]) + p["noise"] * jax.random.normal(k, x.shape)
      xr = noisy(real, kr)

      # D's turn, against a fixed G
      fake, _ = self.generate(state.g_params, state.g_stats, z, level, p["alpha"])
      xf = noisy(jax.lax.stop_gradient(fake), kf)

      def d_loss(dp):
        out, stats = self.discriminate(
          dp, state.d_stats, jnp.concatenate([xr, xf]), level, p["alpha"]
        )
        return losses.d_loss(kind, out[:b], out[b:], p["smooth"]), (out, stats)

      (dl, (d_out, d_stats)), dg = jax.value_and_grad(d_loss, has_aux=True)(state.d_params)
      upd, d_opt = self.d_tx.update(dg, state.d_opt, state.d_params)
      keep = lambda go, new, old: jax.tree.map(lambda n, o: jnp.where(go, n, o), new, old)
      d_params = keep(p["do_d"], optax.apply_updates(state.d_params, upd), state.d_params)
      d_opt = keep(p["do_d"], d_opt, state.d_opt)
      d_stats = keep(p["do_d"], d_stats, state.d_stats)

      # G's turn, through the updated D (its batch-norm statistics are not updated by G's pass)
      def g_loss(gp):
        fake, g_stats = self.generate(gp, state.g_stats, z, level, p["alpha"])
        out, _ = self.discriminate(
          d_params, d_stats, jnp.concatenate([xr, noisy(fake, kf)]), level, p["alpha"]
        )
        return losses.g_loss(kind, out[b:]), (fake, g_stats)

      (gl, (fake, g_stats)), gg = jax.value_and_grad(g_loss, has_aux=True)(state.g_params)
      upd, g_opt = self.g_tx.update(gg, state.g_opt, state.g_params)
      g_params = keep(p["do_g"], optax.apply_updates(state.g_params, upd), state.g_params)
      g_opt = keep(p["do_g"], g_opt, state.g_opt)
      g_stats = keep(p["do_g"], g_stats, state.g_stats)

      acc_real, acc_fake = losses.accuracy(kind, d_out[:b], d_out[b:])
      acc = 0.5 * (acc_real + acc_fake)
      stage, start, ema, in_band = sched.advance(
        state.step, state.stage, state.stage_start, state.acc_ema, state.in_band, acc
      )
      view = self.diversity_view
      div = quality.diversity(
        quality.features(view(jax.lax.stop_gradient(fake))), quality.features(view(real))
      )
      new = TrainState(
        step=state.step + 1,
        stage=stage,
        stage_start=start,
        acc_ema=ema,
        in_band=in_band,
        g_params=g_params,
        g_stats=g_stats,
        d_params=d_params,
        d_stats=d_stats,
        g_opt=g_opt,
        d_opt=d_opt,
      )
      metrics = {
        "d/loss": dl,
        "g/loss": gl,
        "d/acc_real": acc_real,
        "d/acc_fake": acc_fake,
        "d/accuracy": acc,
        "d/grad_norm": optax.global_norm(dg),
        "g/grad_norm": optax.global_norm(gg),
        "quality/diversity": div,
        "curriculum/stage": state.stage.astype(jnp.float32),
        "curriculum/resolution": p["res"].astype(jnp.float32),
        "curriculum/alpha": p["alpha"],
        "curriculum/noise": p["noise"],
        "curriculum/blur": p["blur"],
        "curriculum/smooth": p["smooth"],
        **self.extra_metrics(state, p),
      }
      return new, metrics

    return train_step

  def step_fn(self, step: int, mesh: Mesh, shardings, rules):
    level = self.step_level(self.stage_of(step))
    if level not in self._steps:
      self._steps[level] = self.jit_step(self._train_step(level), mesh, shardings, rules)
    return self._steps[level]

  # ---- samples, evaluation, figures -------------------------------------------------------
  def fixed_latents(self, n: int, salt: int = 0) -> jax.Array:
    return jax.random.normal(
      jax.random.fold_in(jax.random.key(self.seed), 10_000 + salt), (n, self.latent_dim)
    )

  def sample(self, state, z, batch_size: int = 256) -> np.ndarray:
    """Images in [0, 1] at the full size (lower stages upsampled) for latents ``z``, at the
    state's stage and fade-in; batch norm over each batch of ``batch_size`` (deterministic)."""
    stage = int(jax.device_get(state.stage))
    level = self.schedule.level(stage)
    p = self.schedule.at(state.step, state.stage, state.stage_start)
    alpha = float(jax.device_get(p["alpha"]))
    if level not in self._sample_fns:
      full = self.input_shape[0]

      def fn(gp, gs, z, alpha):
        x, _ = self.generate(gp, gs, z, level, alpha)
        return (upsample(x, full // x.shape[1]) + 1.0) / 2.0

      self._sample_fns[level] = jax.jit(fn)
    fn = self._sample_fns[level]
    z = np.asarray(z)
    outs = [
      np.asarray(fn(state.g_params, state.g_stats, z[i : i + batch_size], alpha))
      for i in range(0, z.shape[0], batch_size)
    ]
    return np.clip(np.concatenate(outs), 0.0, 1.0)

  def setup(self, mesh: Mesh, rules, workdir: str, pipeline) -> None:
    src = str(self.config.eval.get("source", "") or "")
    self._eval = evaluation.Quality(self, src, workdir) if src else None

  def evaluate(self, state, step: int) -> dict[str, float]:
    return {} if self._eval is None else self._eval(state)

  def on_checkpoint(self, state, workdir: str, pipeline) -> None:
    step, stage = (int(jax.device_get(x)) for x in (state.step, state.stage))
    title = f"stage {stage} ({self.schedule.resolution(stage)} px)"
    evaluation.save_samples(workdir, step, self.sample(state, self.fixed_latents(64)), title, 8)
    if step >= int(self.config.num_steps):
      evaluation.save_interpolation(self, state, os.path.join(workdir, "interpolation.png"))


def load_features(workdir: str, step: int | None = None, devices=None, mesh=None):
  """`gan.features.GanFeatures` (the discriminator's layers) of the run in ``workdir``."""
  from livermore_brain.gan import features

  return features.GanFeatures.load(workdir, step=step, devices=devices, mesh=mesh)
