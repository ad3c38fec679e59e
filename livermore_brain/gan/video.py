"""The video GAN with curriculum as a `Task` (family ``video_gan``): the image GAN's game
(`gan.task.GanTask` — losses, alternating updates, diagnostics, the train state with both
players and the curriculum's position) played on clips by the spatio-temporal networks of
`gan.video_nets`.

Reads ``model`` (``clip_shape`` (T, H, W, C), ``blocks``, ``g_widths``, ``d_widths`` — one per
level, ``len(blocks) + 1`` — ``latent_dim``, ``loss``), ``optimizer`` / ``d_optimizer``,
``curriculum`` + ``curriculum_rule`` and ``seed``. Batches carry ``frames`` float32
``(B, T, H, W, C)`` in [0, 1].

The curriculum is `gan.curriculum`'s, with each stage's clip length (``frames=``) beside its
resolution (``res=``); every stage's ``(frames, res)`` must be a level of the model's block chain
(e.g. ``blocks="sttss"`` for 8 x 32 x 32: 2x8 -> 4x8 -> 8x8 -> 8x16 -> 8x32 — first the frames,
then the resolution). A stage that grows either fades the new block in. Real clips are
average-pooled to the stage's size; instance noise on every pixel and a spatial blur per frame,
annealed as in images. ``curriculum=none`` is the control (one full-size stage, same code).
`PRESETS` are the video curricula; the image presets (``none``, ``noise``, ``dstrength``) work
too.

Logged: the image GAN's metrics (``d/acc_real``, ``d/acc_fake``, losses, gradient norms,
``quality/diversity`` on the middle frame of every clip, ``curriculum/*``) plus
``curriculum/frames``. No held-out evaluation (no Frechet distance for clips here). Checkpoints
write ``samples.png``: 8 fixed-latent clips, one per row, frames side by side (a copy per step
under ``samples/``).
"""

from __future__ import annotations

import os
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding

from livermore_brain import sharding as shd
from livermore_brain.data.spec import InputSpec
from livermore_brain.gan import losses, quality
from livermore_brain.gan import video_nets as vn
from livermore_brain.gan.curriculum import Schedule
from livermore_brain.gan.task import GanTask, TrainState, gaussian_blur
from livermore_brain.train import optim

# Video curricula, sizes relative to the full clip (frames) and frame size (res).
PRESETS: dict[str, str] = {
  # grow the clip 1/4 -> 1/2 -> full length at 1/4 resolution, then the resolution to 1/2 and
  # full, each growth faded in; instance noise and blur annealed to zero, D's real labels smoothed
  # early
  "progressive": (
    "steps=10%,frames=full/4,res=full/4,noise=0.3>0.2,blur=1>0.75,smooth=0.2;"
    " steps=10%,frames=full/2,res=full/4,fade=5%,noise=0.2>0.15,blur=0.75>0.5,smooth=0.2;"
    " steps=15%,frames=full,res=full/4,fade=5%,noise=0.15>0.1,blur=0.5>0.25,smooth=0.1;"
    " steps=20%,res=full/2,fade=5%,noise=0.1>0.05,blur=0.25>0;"
    " res=full,fade=5%,noise=0.05>0"
  ),
}


class VideoGanTask(GanTask):
  family = "video_gan"
  config_ranges = GanTask.config_ranges

  def __init__(self, config: ml_collections.ConfigDict):  # replaces GanTask's image checks
    m = config.model
    self.config = config
    self.loss = losses.check(str(m.loss))
    t, h, w, c = (int(v) for v in m.clip_shape)
    if h != w:
      raise ValueError(f"the video GAN needs square frames, got model.clip_shape={(t, h, w, c)}")
    self.clip_shape = (t, h, w, c)
    self.blocks = vn.check_blocks(m.blocks)
    self.geometry = vn.geometry(self.blocks, t, h)
    n_levels = len(self.geometry)
    if len(tuple(m.g_widths)) != n_levels or len(tuple(m.d_widths)) != n_levels:
      raise ValueError(
        f"model.g_widths and model.d_widths need one width per level of blocks={self.blocks!r} "
        f"({n_levels}: {', '.join(f'{f}x{r}' for f, r in self.geometry)})"
      )
    self.input_spec = InputSpec((h, w, c), ("frames",), num_frames=t)
    self.latent_dim = int(m.latent_dim)
    base = self.geometry[0]
    self.generator = vn.VideoGenerator(tuple(m.g_widths), self.blocks, base, channels=c)
    self.discriminator = vn.VideoDiscriminator(tuple(m.d_widths), self.blocks, base)
    self.max_level = n_levels - 1
    spec = PRESETS.get(str(config.curriculum), str(config.curriculum))
    self.schedule = Schedule.from_config(
      spec, int(config.num_steps), h, config.get("curriculum_rule"), full_frames=t
    )
    self.stage_levels = tuple(self._level_of(i) for i in range(len(self.schedule.stages)))
    n = int(config.num_steps)
    self.g_tx = optim.make_optimizer(config.optimizer, n)
    self.d_tx = optim.make_optimizer(config.d_optimizer, n)
    self.seed = int(config.seed)
    self._boxed = {
      "g": jax.eval_shape(self._g_init, jax.random.key(0)),
      "d": jax.eval_shape(self._d_init, jax.random.key(0)),
    }
    self._steps: dict[int, object] = {}
    self._stage_now: tuple[int, int] | None = None
    self._eval = None
    self._sample_fns: dict[int, object] = {}

  def _level_of(self, stage: int) -> int:
    size = (self.schedule.frames(stage), self.schedule.resolution(stage))
    if size not in self.geometry:
      chain = ", ".join(f"{f}x{r}" for f, r in self.geometry)
      raise ValueError(
        f"curriculum stage {stage} plays {size[0]} frames at {size[1]}x{size[1]}, which "
        f"model.blocks={self.blocks!r} never produces (its levels, frames x pixels: {chain})"
      )
    return self.geometry.index(size)

  # ---- state ------------------------------------------------------------------------------
  def _g_init(self, key):
    z = jnp.zeros((1, self.latent_dim))
    return self.generator.init(key, z, self.max_level, 1.0, train=False)

  def _d_init(self, key):
    x = jnp.zeros((1, *self.clip_shape))
    return self.discriminator.init(key, x, self.max_level, 1.0, train=False)

  def describe(self) -> str:
    count = lambda tree: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree["params"]))
    t, h, w, c = self.clip_shape
    chain = " -> ".join(f"{f}x{r}" for f, r in self.geometry)
    return (
      f"video GAN ({self.loss} loss): clips {t}x{h}x{w}x{c}, blocks {self.blocks!r} ({chain}); "
      f"generator {count(self._boxed['g']):,} parameters (widths "
      f"{tuple(self.config.model.g_widths)}, latent {self.latent_dim}), discriminator "
      f"{count(self._boxed['d']):,} (widths {tuple(self.config.model.d_widths)}); exported "
      f"layers {', '.join(self.feature_layers())}\n"
      f"curriculum {self.config.curriculum!r}:\n{self.schedule.describe()}"
    )

  @property
  def _needs_sync(self) -> bool:
    return self.schedule.has_criteria and len(set(self.stage_levels)) > 1

  # ---- step -------------------------------------------------------------------------------
  def real_at(self, frames01: jax.Array, level: int) -> jax.Array:
    """Clips in [0, 1] -> [-1, 1], pooled to ``level``'s frames and pixels."""
    t, h = self.clip_shape[:2]
    f, r = self.geometry[level]
    return vn.down(frames01 * 2.0 - 1.0, t // f, h // r)

  def _train_step(self, level: int):
    sched, kind, base = self.schedule, self.loss, jax.random.key(self.seed)
    full = self.clip_shape[1]

    def blur(x, sigma):  # per frame, in space
      b, t, h, w, c = x.shape
      return gaussian_blur(x.reshape(b * t, h, w, c), sigma).reshape(x.shape)

    def train_step(state: TrainState, batch: dict):
      key = jax.random.fold_in(base, state.step)
      kz, kr, kf = jax.random.split(key, 3)
      p = sched.at(state.step, state.stage, state.stage_start)
      real = self.real_at(batch["frames"], level)
      b = real.shape[0]
      z = jax.random.normal(kz, (b, self.latent_dim))
      noisy = lambda x, k: blur(x, p["blur"]) + p["noise"] * jax.random.normal(k, x.shape)
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
      mid = lambda x: x[:, x.shape[1] // 2]  # the middle frame, at the full frame size
      up = lambda x: jnp.repeat(jnp.repeat(x, full // x.shape[1], 1), full // x.shape[2], 2)
      div = quality.diversity(
        quality.features(up(mid(jax.lax.stop_gradient(fake)))), quality.features(up(mid(real)))
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
        "curriculum/in_band": state.in_band.astype(jnp.float32),
        "curriculum/resolution": p["res"].astype(jnp.float32),
        "curriculum/frames": p["frames"].astype(jnp.float32),
        "curriculum/alpha": p["alpha"],
        "curriculum/noise": p["noise"],
        "curriculum/blur": p["blur"],
        "curriculum/smooth": p["smooth"],
      }
      return new, metrics

    return train_step

  def step_fn(self, step: int, mesh: Mesh, shardings, rules):
    level = self.stage_levels[self.stage_of(step)]
    if level not in self._steps:
      bsh = {
        k: NamedSharding(mesh, shd.logical_to_spec(a, rules)) for k, a in self.batch_axes().items()
      }
      self._steps[level] = jax.jit(
        self._train_step(level),
        in_shardings=(shardings, bsh),
        out_shardings=(shardings, shd.replicated(mesh)),
        donate_argnums=(0,),
      )
    return self._steps[level]

  # ---- samples ----------------------------------------------------------------------------
  def sample(self, state, z, batch_size: int = 256) -> np.ndarray:
    """Clips in [0, 1] at the full size (shorter / smaller stages repeated) for latents ``z``,
    at the state's stage and fade-in; batch norm over each batch (deterministic)."""
    stage = int(jax.device_get(state.stage))
    level = self.stage_levels[stage]
    p = self.schedule.at(state.step, state.stage, state.stage_start)
    alpha = float(jax.device_get(p["alpha"]))
    if level not in self._sample_fns:
      t, h = self.clip_shape[:2]

      def fn(gp, gs, z, alpha):
        x, _ = self.generate(gp, gs, z, level, alpha)
        ft, fs = t // x.shape[1], h // x.shape[2]
        x = jnp.repeat(jnp.repeat(jnp.repeat(x, ft, 1), fs, 2), fs, 3)
        return (x + 1.0) / 2.0

      self._sample_fns[level] = jax.jit(fn)
    fn = self._sample_fns[level]
    z = np.asarray(z)
    outs = [
      np.asarray(fn(state.g_params, state.g_stats, z[i : i + batch_size], alpha))
      for i in range(0, z.shape[0], batch_size)
    ]
    return np.clip(np.concatenate(outs), 0.0, 1.0)

  def setup(self, mesh: Mesh, rules, workdir: str, pipeline) -> None:
    self._eval = None

  def on_checkpoint(self, state, workdir: str, pipeline) -> None:
    from livermore_brain import viz

    step = int(jax.device_get(state.step))
    clips = self.sample(state, self.fixed_latents(8))
    stage = int(jax.device_get(state.stage))
    f, r = self.schedule.frames(stage), self.schedule.resolution(stage)
    os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
    path = viz.image_grid(
      clips,  # (clips, frames, H, W, C): one clip per row
      os.path.join(workdir, "samples", f"step_{step:07d}.png"),
      normalize=False,
      suptitle=f"step {step}, stage {stage} ({f} frames at {r} px)",
    )
    shutil.copyfile(path, os.path.join(workdir, "samples.png"))


def load_features(workdir: str, step: int | None = None, devices=None, mesh=None):
  """`gan.video_features.VideoGanFeatures` (the discriminator's layers) of the run in
  ``workdir``."""
  from livermore_brain.gan import video_features

  return video_features.VideoGanFeatures.load(workdir, step=step, devices=devices, mesh=mesh)
