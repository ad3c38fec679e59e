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

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh

from livermore_brain.data.spec import InputSpec
from livermore_brain.gan import evaluation, losses
from livermore_brain.gan import video_nets as vn
from livermore_brain.gan.curriculum import Schedule
from livermore_brain.gan.task import GanTask, gaussian_blur
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

  def step_level(self, stage: int) -> int:
    return self.stage_levels[stage]

  def real_of(self, batch: dict, level: int) -> jax.Array:
    return self.real_at(batch["frames"], level)

  def blur(self, x: jax.Array, sigma) -> jax.Array:  # per frame, in space
    b, t, h, w, c = x.shape
    return gaussian_blur(x.reshape(b * t, h, w, c), sigma).reshape(x.shape)

  def diversity_view(self, x: jax.Array) -> jax.Array:
    """The middle frame of each clip, at the full frame size."""
    full = self.clip_shape[1]
    x = x[:, x.shape[1] // 2]
    return jnp.repeat(jnp.repeat(x, full // x.shape[1], 1), full // x.shape[2], 2)

  def extra_metrics(self, state, p: dict) -> dict:
    return {
      "curriculum/in_band": state.in_band.astype(jnp.float32),
      "curriculum/frames": p["frames"].astype(jnp.float32),
    }

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
    step, stage = (int(jax.device_get(x)) for x in (state.step, state.stage))
    title = f"stage {stage} ({self.schedule.frames(stage)} frames at {self.schedule.resolution(stage)} px)"
    clips = self.sample(state, self.fixed_latents(8))  # (clips, frames, H, W, C): a clip per row
    evaluation.save_samples(workdir, step, clips, title)


def load_features(workdir: str, step: int | None = None, devices=None, mesh=None):
  """`gan.video_features.VideoGanFeatures` (the discriminator's layers) of the run in
  ``workdir``."""
  from livermore_brain.gan import video_features

  return video_features.VideoGanFeatures.load(workdir, step=step, devices=devices, mesh=mesh)
