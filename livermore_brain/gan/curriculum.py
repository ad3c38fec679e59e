"""The curriculum: a schedule of adversarial games from easy to hard, as data.

The LDRD report staged GAN training "in successively harder games for both networks to prevent
one network from dominating" without saying what harder means. Here a curriculum is a tuple of
`Stage`s, each one game, and three kinds of difficulty can be scheduled (any combination):

* **resolution** (progressive growing, Karras et al. 2018): both networks play at ``res x res``
  (real images average-pooled down); when a stage's resolution is higher than the previous
  one's, the new layers fade in over ``fade`` steps (``alpha`` 0 -> 1, `nets`);
* **instance noise and blur** (Sønderby et al. 2017; Arjovsky & Bottou 2017): Gaussian noise of
  std ``noise`` and a Gaussian blur of ``blur`` pixels on *both* real and fake inputs of the
  discriminator, each annealed linearly from its start to its end value over the stage;
* **clip length** (video GANs, `gan.video`): both networks play on clips of ``frames`` frames
  (real clips average-pooled in time); growing it fades in like a resolution step;
* **discriminator strength**: one-sided label smoothing ``smooth`` of D's real targets
  (Salimans et al. 2016) and the update ratio — D is updated on steps where
  ``step % d_every == 0``, G where ``step % g_every == 0``.

A stage ends after ``steps`` steps (an int, or ``"20%"`` of the run's ``num_steps``; ``0`` =
the rest of the run), or earlier with ``until="equilibrium"``: once the exponential moving
average of D's accuracy has stayed within ``band`` of 0.5 for ``patience`` consecutive steps
(and its fade-in is over). The control, ``none``, is the same code with one full-resolution stage
and nothing annealed.

Config form (``--config.curriculum=``): a preset name from `PRESETS` or an inline spec, stages
separated by ``;``, fields by ``,``, a start>end range with ``>``, a resolution as pixels or as
``full/<k>`` (``frames`` likewise, for clips)::

    steps=15%,res=full/4,noise=0.3>0.1,blur=1>0.5,smooth=0.2; steps=25%,res=full/2,fade=10%,...

Inside the jitted step everything but the resolution is a traced scalar looked up from per-stage
tables (`Schedule.at`), so the step compiles once per resolution, not per step; the stage, its
start step and the accuracy average live in the train state, so a resumed run continues the same
schedule bit for bit, also across a stage boundary decided by the criterion.
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np

UNTIL = ("", "equilibrium")

# Named curricula (resolutions relative to the full input size).
PRESETS: dict[str, str] = {
  # the control: one stage at full resolution, nothing annealed, plain D
  "none": "res=full",
  # all three kinds, in three games: 1/4 -> 1/2 -> full resolution with fade-ins; noise and blur
  # annealed to zero; D's real targets smoothed early
  "progressive": (
    "steps=15%,res=full/4,noise=0.3>0.15,blur=1>0.5,smooth=0.2;"
    " steps=25%,res=full/2,fade=10%,noise=0.15>0.05,blur=0.5>0,smooth=0.1;"
    " res=full,fade=10%,noise=0.05>0"
  ),
  # the same games, each ended early once D's accuracy sits near 0.5 (the steps are maxima)
  "equilibrium": (
    "steps=20%,until=equilibrium,res=full/4,noise=0.3>0.15,blur=1>0.5,smooth=0.2;"
    " steps=30%,until=equilibrium,res=full/2,fade=10%,noise=0.15>0.05,blur=0.5>0,smooth=0.1;"
    " res=full,fade=10%,noise=0.05>0"
  ),
  # ablations: one kind of difficulty each, at full resolution
  "noise": "steps=50%,noise=0.3>0,blur=1>0; res=full",
  "dstrength": "steps=30%,smooth=0.3,d_every=2; steps=30%,smooth=0.1; res=full",
}


@dataclasses.dataclass(frozen=True)
class Stage:
  """One game. Lengths are absolute steps after `Curriculum.resolve` (``0`` = to the end)."""

  steps: int = 0
  until: str = ""
  res: int = 0  # pixels per side; 0 = the full input size
  frames: int = 0  # frames per clip (video GANs); 0 = the full clip length
  fade: int = 0  # steps of fade-in when this stage's resolution is above the previous one's
  noise: tuple[float, float] = (0.0, 0.0)  # instance-noise std (images in [-1, 1]) start, end
  blur: tuple[float, float] = (0.0, 0.0)  # Gaussian blur sigma (pixels at res) start, end
  smooth: float = 0.0  # one-sided label smoothing of D's real targets
  d_every: int = 1
  g_every: int = 1


def _length(v: str, num_steps: int) -> int:
  v = v.strip()
  if v.endswith("%"):
    return int(round(float(v[:-1]) / 100.0 * num_steps))
  return int(v)


def _res(v: str, full: int) -> int:
  v = v.strip()
  if v.startswith("full"):
    k = int(v.split("/", 1)[1]) if "/" in v else 1
    if k < 1 or full % k:
      raise ValueError(f"resolution {v!r}: {full} is not divisible by {k}")
    return full // k
  return int(v)


def _range(v: str) -> tuple[float, float]:
  a, _, b = v.partition(">")
  return (float(a), float(b if b else a))


def parse(spec: str, num_steps: int, full: int, full_frames: int = 1) -> tuple[Stage, ...]:
  """A preset name or inline spec (module docstring) -> absolute `Stage`s; ValueError on nonsense."""
  text = PRESETS.get(str(spec).strip(), str(spec))
  stages = []
  for part in text.split(";"):
    if not part.strip():
      continue
    kw = {}
    for item in part.split(","):
      if not item.strip():
        continue
      key, eq, val = item.partition("=")
      key = key.strip()
      if not eq:
        raise ValueError(f"curriculum stage field {item!r} is not key=value")
      if key in ("steps", "fade"):
        kw[key] = _length(val, num_steps)
      elif key == "res":
        kw[key] = _res(val, full)
      elif key == "frames":
        kw[key] = _res(val, full_frames)
      elif key in ("noise", "blur"):
        kw[key] = _range(val)
      elif key == "smooth":
        kw[key] = float(val)
      elif key in ("d_every", "g_every"):
        kw[key] = int(val)
      elif key == "until":
        kw[key] = val.strip()
      else:
        names = ", ".join(f.name for f in dataclasses.fields(Stage))
        raise ValueError(f"unknown curriculum stage field {key!r}; fields: {names}")
    stages.append(Stage(**kw))
  if not stages:
    raise ValueError(
      f"curriculum {spec!r} has no stages; use one of {', '.join(PRESETS)} or an inline spec"
    )
  return tuple(stages)


@dataclasses.dataclass(frozen=True)
class Schedule:
  """A resolved curriculum for one run: stages, the full resolution, and the advance rule."""

  stages: tuple[Stage, ...]
  num_steps: int
  full: int  # full resolution (pixels per side, = 4 * 2**levels)
  full_frames: int = 1  # full clip length (video GANs; 1 = images)
  band: float = 0.1  # equilibrium: |EMA(D accuracy) - 0.5| <= band ...
  patience: int = 20  # ... for this many consecutive steps
  ema: float = 0.9  # EMA decay of D's accuracy

  @classmethod
  def from_config(cls, spec: str, num_steps: int, full: int, cfg=None, full_frames=1) -> Schedule:
    stages = parse(spec, num_steps, full, int(full_frames))
    kw = {}
    if cfg is not None:
      kw = dict(band=float(cfg.band), patience=int(cfg.patience), ema=float(cfg.ema))
    s = cls(stages, int(num_steps), int(full), int(full_frames), **kw)
    s.check()
    return s

  def check(self) -> None:
    if not math.log2(self.full / 4).is_integer() or self.full < 4:
      raise ValueError(f"the GAN's input size must be 4 * 2**k (8, 16, 32, 64...), got {self.full}")
    prev = None
    for i, s in enumerate(self.stages):
      r = self.resolution(i)
      where = f"curriculum stage {i}"
      if r > self.full or r < 4 or not math.log2(r / 4).is_integer():
        raise ValueError(f"{where}: resolution {r} must be 4 * 2**k and at most {self.full}")
      if prev is not None and r < prev:
        raise ValueError(f"{where}: resolution {r} below the previous stage's {prev}")
      f = self.frames(i)
      if not 1 <= f <= self.full_frames or (i and f < self.frames(i - 1)):
        raise ValueError(
          f"{where}: {f} frames must be in [1, {self.full_frames}] and not below the previous "
          "stage's"
        )
      if s.until not in UNTIL:
        raise ValueError(f"{where}: until={s.until!r} is not one of {UNTIL}")
      if s.d_every < 1 or s.g_every < 1:
        raise ValueError(f"{where}: d_every and g_every must be >= 1")
      if s.steps < 0 or s.fade < 0 or not 0.0 <= s.smooth < 1.0:
        raise ValueError(f"{where}: steps, fade >= 0 and smooth in [0, 1) required")
      if s.steps == 0 and i < len(self.stages) - 1:
        raise ValueError(f"{where}: only the last stage may run to the end (steps=0)")
      if s.until and s.steps == 0:
        raise ValueError(f"{where}: until={s.until} needs steps=<maximum length>")
      prev = r
    if self.stages[-1].res and self.resolution(len(self.stages) - 1) != self.full:
      raise ValueError(f"the last curriculum stage must play at the full resolution {self.full}")
    if self.frames(len(self.stages) - 1) != self.full_frames:
      raise ValueError(
        f"the last curriculum stage must play full clips ({self.full_frames} frames)"
      )

  # ---- host side --------------------------------------------------------------------------
  def resolution(self, stage: int) -> int:
    return int(self.stages[stage].res or self.full)

  def frames(self, stage: int) -> int:
    return int(self.stages[stage].frames or self.full_frames)

  def level(self, stage: int) -> int:
    """Network level of a stage: resolution = 4 * 2**level."""
    return int(round(math.log2(self.resolution(stage) / 4)))

  def fade(self, stage: int) -> int:
    """Fade-in steps of ``stage`` (0 when neither its resolution nor its clip length grew)."""
    size = lambda i: (self.resolution(i), self.frames(i))
    if stage == 0 or size(stage) == size(stage - 1):
      return 0
    return int(self.stages[stage].fade)

  @property
  def has_criteria(self) -> bool:
    return any(s.until for s in self.stages)

  @property
  def levels(self) -> tuple[int, ...]:
    return tuple(sorted({self.level(i) for i in range(len(self.stages))}))

  def starts(self) -> list[int]:
    """Start step of every stage when every stage runs its full length (no early advance)."""
    out, t = [], 0
    for s in self.stages:
      out.append(t)
      t += s.steps
    return out

  def stage_at(self, step: int) -> int:
    """The stage at ``step`` when no stage ends early (exact for curricula without ``until``)."""
    return max(i for i, t in enumerate(self.starts()) if t <= step)

  def alpha_at(self, step: int) -> float:
    """Fade-in weight of the new layers at ``step`` (no early advance); 1 = fully faded in."""
    i = self.stage_at(step)
    f = self.fade(i)
    return 1.0 if f == 0 else min(1.0, (step - self.starts()[i]) / f)

  def describe(self) -> str:
    rows = []
    for i, s in enumerate(self.stages):
      n = f"{s.steps} steps" if s.steps else "to the end"
      if s.until:
        n += f" (or until {s.until})"
      r = self.resolution(i)
      extra = f", fade {self.fade(i)}" if self.fade(i) else ""
      clip = f"{self.frames(i)} frames of " if self.full_frames > 1 else ""
      rows.append(
        f"  stage {i}: {clip}{r}x{r}{extra}, {n}, noise {s.noise[0]:g}>{s.noise[1]:g}, blur "
        f"{s.blur[0]:g}>{s.blur[1]:g}, smooth {s.smooth:g}, D every {s.d_every}, G every "
        f"{s.g_every}"
      )
    return "\n".join(rows)

  # ---- traced -----------------------------------------------------------------------------
  def tables(self) -> dict[str, np.ndarray]:
    """Per-stage values, indexed by the (traced) stage inside the step."""
    st = self.stages
    f32 = lambda xs: np.asarray(xs, np.float32)
    return dict(
      steps=np.asarray([s.steps for s in st], np.int32),
      fade=np.asarray([self.fade(i) for i in range(len(st))], np.int32),
      until=np.asarray([bool(s.until) for s in st]),
      noise0=f32([s.noise[0] for s in st]),
      noise1=f32([s.noise[1] for s in st]),
      blur0=f32([s.blur[0] for s in st]),
      blur1=f32([s.blur[1] for s in st]),
      smooth=f32([s.smooth for s in st]),
      d_every=np.asarray([s.d_every for s in st], np.int32),
      g_every=np.asarray([s.g_every for s in st], np.int32),
      res=np.asarray([self.resolution(i) for i in range(len(st))], np.int32),
      frames=np.asarray([self.frames(i) for i in range(len(st))], np.int32),
    )

  def at(self, step, stage, stage_start) -> dict:
    """Traced game parameters at ``step`` in ``stage`` (begun at ``stage_start``)."""
    tb = {k: jnp.asarray(v) for k, v in self.tables().items()}
    t = (step - stage_start).astype(jnp.float32)
    length = jnp.where(tb["steps"][stage] > 0, tb["steps"][stage], self.num_steps - stage_start)
    frac = jnp.clip(t / jnp.maximum(length, 1).astype(jnp.float32), 0.0, 1.0)
    fade = tb["fade"][stage]
    alpha = jnp.where(fade > 0, jnp.clip(t / jnp.maximum(fade, 1).astype(jnp.float32), 0, 1), 1.0)
    lerp = lambda a, b: tb[a][stage] + (tb[b][stage] - tb[a][stage]) * frac
    return dict(
      alpha=alpha.astype(jnp.float32),
      noise=lerp("noise0", "noise1"),
      blur=lerp("blur0", "blur1"),
      smooth=tb["smooth"][stage],
      do_d=(step % tb["d_every"][stage]) == 0,
      do_g=(step % tb["g_every"][stage]) == 0,
      res=tb["res"][stage],
      frames=tb["frames"][stage],
    )

  def advance(self, step, stage, stage_start, acc_ema, in_band, acc):
    """After the step at ``step`` with D accuracy ``acc``: the next ``(stage, stage_start,
    acc_ema, in_band)``. The EMA restarts at 1 (a prior of "D wins": equilibrium must be shown,
    not assumed) and the in-band count at 0 with every stage."""
    tb = {k: jnp.asarray(v) for k, v in self.tables().items()}
    ema = self.ema * acc_ema + (1.0 - self.ema) * acc
    in_band = jnp.where(jnp.abs(ema - 0.5) <= self.band, in_band + 1, 0)
    t_next = step + 1 - stage_start
    steps = tb["steps"][stage]
    by_length = (steps > 0) & (t_next >= steps)
    by_criterion = tb["until"][stage] & (in_band >= self.patience) & (t_next >= tb["fade"][stage])
    go = (stage < len(self.stages) - 1) & (by_length | by_criterion)
    return (
      jnp.where(go, stage + 1, stage),
      jnp.where(go, step + 1, stage_start),
      jnp.where(go, 1.0, ema).astype(jnp.float32),
      jnp.where(go, 0, in_band),
    )
