r"""Train word vectors (skip-gram, negative sampling): ``python -m experiments.word_vectors``.

With no flags: the Lee news corpus that ships in the gensim wheel, 100-d, into
``runs/word_vectors-cpu``; prints word-similarity correlations (WordSim-353, SimLex-999, also
shipped there) and nearest neighbours. ``--plan`` compiles one step from abstract shapes for
``--config.plan_vocab`` words on ``--config.mesh`` (fake CPU devices are fine) and prints the
tables' memory per device. Rerunning resumes. See experiments/configs/word_vectors.py.
"""

from __future__ import annotations

import json
import os

from absl import flags
from ml_collections import config_flags

from experiments import common

_CONFIG = config_flags.DEFINE_config_file(
  "config",
  os.path.join(os.path.dirname(__file__), "configs", "word_vectors.py"),
  "Config file with a preset: experiments/configs/word_vectors.py:tiny|cpu|yfcc.",
  lock_config=True,
)
_WORKDIR = flags.DEFINE_string(
  "workdir", None, "Output directory. Default: runs/word_vectors-<preset>."
)
_PLAN = flags.DEFINE_bool("plan", False, "Only plan the tables' memory (no training).")


def plan(config) -> dict:
  from livermore_brain import sharding as shd
  from livermore_brain.image2vec import skipgram, text

  vocab = int(config.plan_vocab)
  if not vocab:
    vocab = len(text.Vocab.build(text.documents(config.source, config.max_docs or None),
                                 config.min_count, config.max_vocab or None))  # fmt: skip
  mesh = shd.make_mesh(config.mesh)
  out = skipgram.SkipGram(config, vocab, mesh).plan()
  gib = lambda b: f"{b / 2**30:.2f} GiB"
  print(f"word-vector plan: {vocab:,} words x {config.dim} (x2 tables, {out['rows']:,} rows), "
        f"mesh {out['mesh']}, batch {config.batch_size} pairs, optimizer {config.optimizer.name}")  # fmt: skip
  print(f"  tables + optimizer state: {gib(out['table_bytes_total'] + out['optimizer_bytes_total'])} "
        f"in all, {gib(out['table_bytes_per_device'])} per device (split over model)")  # fmt: skip
  b = out["bytes_per_device"]
  print(f"  XLA per device: arguments {gib(b['arguments'])}, temporaries {gib(b['temporaries'])}, "
        f"peak {gib(b['total'])}; negative table {gib(out['negative_table_bytes'])} replicated")  # fmt: skip
  print("  collectives: " + json.dumps(out["collectives"]))
  return out


def main(argv):
  if len(argv) > 1:
    raise ValueError(
      f"unexpected arguments {argv[1:]}; options are --config, --config.<key>=, --workdir, --plan"
    )
  config = _CONFIG.value
  if _PLAN.value:
    plan(config)
    return
  from livermore_brain.image2vec import skipgram

  workdir = _WORKDIR.value or os.path.join("runs", f"word_vectors-{config.preset}")
  s = skipgram.train(config, workdir)
  for name, r in s["similarity"].items():
    if "error" in r:
      print(f"{name}: {r['error']}")
    else:
      print(f"{name}: Spearman {r['spearman']:.3f} over {r['pairs']} pairs "
            f"({100 * r['coverage']:.0f}% of the list in the vocabulary)")  # fmt: skip
  for q, nn in s["neighbours"].items():
    print(f"  {q}: " + ", ".join(f"{w} {c:.2f}" for w, c in nn))
  print(f"\nvectors in {workdir}/vectors.txt (word2vec text format); summary.json, metrics.jsonl")


if __name__ == "__main__":
  common.run(main)
