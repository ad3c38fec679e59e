r"""Curriculum vs control over seeds — the LDRD report's GAN claim, measured:
``python -m experiments.gan_compare [--arms=progressive,none] [--seeds=0,1,2]``.

The report: staging the game "leads to dramatically more stable learning that converges more
quickly to the equilibrium point". For every arm (a curriculum; ``none`` is the one-stage
control, the same code) and seed this trains a run (``<out>/<arm>-s<seed>``; an unfinished run
is resumed, a finished one reused) and reads its metrics:

* **steps to equilibrium**: the first logged step from which D's accuracy (mean of real and fake,
  each log a window mean) stays within ``band`` of 0.5 until the end; ``never`` when the last
  log is outside;
* **steps until both are alive** (a looser criterion, added after the first runs showed D's
  accuracy settling near 0.75, not 0.5): the first logged step from which it stays <= 0.9;
* **D wins outright**: D's accuracy over the last fifth of the run >= ``d_wins``;
* **collapsed**: the final sample diversity in the fixed feature space (`gan.quality`) below
  ``collapse`` (1 = the data's spread);
* **FD**: the Frechet distance of fixed-latent samples to held-out images in that feature space
  at the end, beside training-vs-held-out (the floor) and noise-vs-held-out; FD and diversity
  at every evaluation as mean ± sd over the seeds.

Writes ``compare.md`` (per-run rows and per-arm mean ± sd), ``compare.json`` and ``compare.png``
(D accuracy against steps, the band; FD and diversity at the evaluations) into ``--out``.
Every ``--config.<field>`` override applies to every run (e.g. shorter runs:
``--config.num_steps=600``).
"""

from __future__ import annotations

import json
import os

import numpy as np
from absl import flags

from experiments import common

FLAGS = flags.FLAGS


def _series(rows, key):
  pts = [(r["step"], r[key]) for r in rows if key in r]
  return [p[0] for p in pts], [p[1] for p in pts]


def _finished(workdir: str, num_steps: int) -> bool:
  try:
    with open(os.path.join(workdir, "summary.json")) as f:
      return int(json.load(f)["final_step"]) >= num_steps
  except (OSError, ValueError, KeyError):
    return False


ALIVE = 0.9  # a looser criterion (chosen after the first runs): D no longer wins nearly always


def _stays(steps, values, ok):
  """The first logged step from which ``ok(value)`` holds until the end; None if the last fails."""
  first = None
  for i in range(len(values) - 1, -1, -1):  # walk back while it holds
    if not ok(values[i]):
      break
    first = steps[i]
  return first


def analyze_run(workdir: str, num_steps: int, band: float, d_wins: float, collapse: float) -> dict:
  from livermore_brain.train import metrics

  rows = metrics.read_metrics(workdir)
  steps, acc = _series(rows, "d/accuracy")
  eq = _stays(steps, acc, lambda a: abs(a - 0.5) <= band)
  alive = _stays(steps, acc, lambda a: a <= ALIVE)
  tail = [a for s, a in zip(steps, acc) if s > 0.8 * num_steps]
  ev = [r for r in rows if "eval/fd" in r]
  last = ev[-1] if ev else {}
  div = last.get("eval/diversity", float("nan"))
  return dict(
    workdir=workdir,
    steps_to_equilibrium=eq,
    steps_to_alive=alive,
    final_d_accuracy=float(np.mean(tail)) if tail else float("nan"),
    d_wins=bool(tail) and float(np.mean(tail)) >= d_wins,
    collapsed=bool(np.isfinite(div)) and div < collapse,
    fd=last.get("eval/fd", float("nan")),
    diversity=div,
    fd_train=last.get("eval/fd_train", float("nan")),
    fd_noise=last.get("eval/fd_noise", float("nan")),
    curve=dict(steps=steps, d_accuracy=acc, eval_steps=[r["step"] for r in ev],
               fd=[r["eval/fd"] for r in ev], diversity=[r["eval/diversity"] for r in ev]),
  )  # fmt: skip


def _ms(xs) -> str:
  xs = [x for x in xs if x is not None and np.isfinite(x)]
  if not xs:
    return "–"
  return f"{np.mean(xs):.3g} ± {np.std(xs, ddof=1):.2g}" if len(xs) > 1 else f"{xs[0]:.3g}"


def to_markdown(results: dict, cfg) -> str:
  head = (
    f"D accuracy band 0.5 ± {cfg['band']}; D wins: accuracy >= {cfg['d_wins']} over the last "
    f"fifth; collapsed: diversity < {cfg['collapse']}; FD in the fixed random-conv feature "
    f"space (livermore_brain.gan.quality), {cfg['num_steps']} steps per run.\n\n"
  )
  lines = [
    "| arm | seed | steps to equilibrium | steps to D <= 0.9 | final D accuracy | D wins | collapsed "
    "| FD | diversity |",
    "|---|---|---|---|---|---|---|---|---|",
  ]
  for arm, runs in results.items():
    for seed, r in runs.items():
      eq, al = r["steps_to_equilibrium"], r["steps_to_alive"]
      lines.append(
        f"| {arm} | {seed} | {eq if eq is not None else 'never'} | "
        f"{al if al is not None else 'never'} | {r['final_d_accuracy']:.3f} | "
        f"{'yes' if r['d_wins'] else 'no'} | {'yes' if r['collapsed'] else 'no'} | "
        f"{r['fd']:.2f} | {r['diversity']:.3f} |"
      )
  lines += [
    "",
    "| arm | runs reaching equilibrium | steps to equilibrium (those runs) | runs with D <= 0.9 "
    "| steps to D <= 0.9 (those runs) | D wins | collapsed | FD, mean ± sd | diversity |",
    "|---|---|---|---|---|---|---|---|---|",
  ]
  for arm, runs in results.items():
    rs = list(runs.values())
    eqs = [r["steps_to_equilibrium"] for r in rs if r["steps_to_equilibrium"] is not None]
    als = [r["steps_to_alive"] for r in rs if r["steps_to_alive"] is not None]
    lines.append(
      f"| {arm} | {len(eqs)}/{len(rs)} | {_ms(eqs)} | {len(als)}/{len(rs)} | {_ms(als)} | "
      f"{sum(r['d_wins'] for r in rs)}/{len(rs)} | "
      f"{sum(r['collapsed'] for r in rs)}/{len(rs)} | {_ms([r['fd'] for r in rs])} | "
      f"{_ms([r['diversity'] for r in rs])} |"
    )
  steps = sorted(
    {s for runs in results.values() for r in runs.values() for s in r["curve"]["eval_steps"]}
  )
  if steps:  # how FD and diversity move: mean ± sd over the seeds at every evaluation
    lines += [
      "",
      "| arm | " + " | ".join(f"FD at {s}" for s in steps) + " | "
      + " | ".join(f"diversity at {s}" for s in steps) + " |",
      "|---|" + "---|" * (2 * len(steps)),
    ]  # fmt: skip
    for arm, runs in results.items():
      at = {k: {s: [] for s in steps} for k in ("fd", "diversity")}
      for r in runs.values():
        c = r["curve"]
        for k in at:
          for s, v in zip(c["eval_steps"], c[k]):
            at[k][s].append(v)
      cells = [_ms(at[k][s]) for k in ("fd", "diversity") for s in steps]
      lines.append(f"| {arm} | " + " | ".join(cells) + " |")
  any_run = next(iter(next(iter(results.values())).values()))
  lines.append(
    f"\nReferences in the same feature space: training vs held-out images FD "
    f"{any_run['fd_train']:.2f} (the floor), uniform noise vs held-out {any_run['fd_noise']:.2f}."
  )
  return head + "\n".join(lines) + "\n"


def plot(results: dict, path: str, band: float) -> str:
  from matplotlib.figure import Figure

  fig = Figure(figsize=(13, 3.8))
  ax_acc, ax_fd, ax_div = fig.subplots(1, 3)
  colors = ["tab:blue", "tab:red", "tab:green", "tab:purple"]
  for (arm, runs), col in zip(results.items(), colors):
    for i, r in enumerate(runs.values()):
      c = r["curve"]
      lab = arm if i == 0 else None
      ax_acc.plot(c["steps"], c["d_accuracy"], color=col, alpha=0.7, lw=1, label=lab)
      ax_fd.plot(c["eval_steps"], c["fd"], "o-", color=col, alpha=0.7, label=lab)
      ax_div.plot(c["eval_steps"], c["diversity"], "o-", color=col, alpha=0.7, label=lab)
  ax_acc.axhspan(0.5 - band, 0.5 + band, color="0.85", label="equilibrium band")
  ax_acc.axhline(ALIVE, color="0.5", ls="--", lw=0.8)
  ax_acc.set(xlabel="step", ylabel="D accuracy (real + fake) / 2", ylim=(0.3, 1.02))
  ax_fd.set(xlabel="step", ylabel="FD to held-out (random-conv features)", yscale="log")
  ax_div.set(xlabel="step", ylabel="sample diversity / data's")
  for ax in (ax_acc, ax_fd, ax_div):
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  return path


def compare(config, arms, seeds, out: str, band=0.15, d_wins=0.95, collapse=0.3, log=print) -> dict:
  from livermore_brain import families

  results: dict = {}
  for arm in arms:
    results[arm] = {}
    for seed in seeds:
      c = config.copy_and_resolve_references()
      c.unlock()
      c.curriculum, c.seed = arm, int(seed)
      wd = os.path.join(out, f"{arm}-s{seed}")
      if _finished(wd, int(c.num_steps)):
        log(f"== {arm}, seed {seed}: reusing the finished run {wd}")
      else:
        log(f"== {arm}, seed {seed} -> {wd}")
        families.train(c, wd)
      r = analyze_run(wd, int(c.num_steps), band, d_wins, collapse)
      results[arm][str(seed)] = r
  cfg = dict(band=band, d_wins=d_wins, collapse=collapse, num_steps=int(config.num_steps))
  md = to_markdown(results, cfg)
  with open(os.path.join(out, "compare.md"), "w") as f:
    f.write(md)
  with open(os.path.join(out, "compare.json"), "w") as f:
    json.dump(dict(config=cfg, results=results), f, indent=1)
  plot(results, os.path.join(out, "compare.png"), band)
  log(md)
  return results


def main_flags():
  from ml_collections import config_flags

  config = config_flags.DEFINE_config_file(
    "config",
    os.path.join(os.path.dirname(__file__), "configs", "gan.py"),
    "GAN config (every run): experiments/configs/gan.py[:preset].",
    lock_config=True,
  )
  arms = flags.DEFINE_list("arms", ["progressive", "none"], "Curricula to compare.")
  seeds = flags.DEFINE_list("seeds", ["0", "1", "2"], "Training seeds.")
  out = flags.DEFINE_string("out", "runs/gan_compare", "Output folder (one run per arm, seed).")
  band = flags.DEFINE_float("band", 0.15, "Equilibrium band half-width around 0.5.")

  def main(argv):
    if len(argv) > 1:
      raise ValueError(f"unexpected arguments {argv[1:]}")
    os.makedirs(out.value, exist_ok=True)
    compare(config.value, arms.value, [int(s) for s in seeds.value], out.value, band=band.value)

  return main


if __name__ == "__main__":
  common.run(main_flags())
