r"""Image2Vec: map a run's image features into the word space, tag and search:
``python -m experiments.image2vec --config.features_from=<run dir>:<layer>``.

Trains the mapping (cosine and DeViSE hinge losses) on all tags and on the zero-shot split and
writes ``tagging.md``, ``zeroshot.md``, ``search.png`` and ``results.json`` in ``--workdir``
(default ``runs/image2vec-<preset>``). ``experiments.tagging`` adds TagProp, JEC and ConSE.
See experiments/configs/image2vec.py.
"""

from __future__ import annotations

import os

from absl import flags
from ml_collections import config_flags

from experiments import common

_CONFIG = config_flags.DEFINE_config_file(
  "config",
  os.path.join(os.path.dirname(__file__), "configs", "image2vec.py"),
  "Config file with a preset: experiments/configs/image2vec.py:tiny|cpu|yfcc.",
  lock_config=True,
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory. Default: runs/<job>-<preset>.")
_SUMMARIZE = flags.DEFINE_list(
  "summarize", [], "Only print mean +- sd tables over these finished output directories (seeds)."
)


def make_main(job: str, methods):
  def main(argv):
    if len(argv) > 1:
      raise ValueError(
        f"unexpected arguments {argv[1:]}; options are --config, --config.<key>=, --workdir"
      )
    from livermore_brain.image2vec import experiment

    if _SUMMARIZE.value:
      print(experiment.summarize(_SUMMARIZE.value))
      return
    config = _CONFIG.value
    workdir = _WORKDIR.value or os.path.join("runs", f"{job}-{config.preset}")
    r = experiment.run(config, workdir, methods)
    for name in ("tagging.md", "zeroshot.md"):
      with open(os.path.join(workdir, name)) as f:
        print("\n" + f.read())
    print(
      f"{r['seconds']} s. Outputs in {workdir}: tagging.md, zeroshot.md, search.png, results.json"
    )

  return main


main = make_main("image2vec", ("image2vec",))

if __name__ == "__main__":
  common.run(main)
