r"""TagProp, JEC, Image2Vec and ConSE side by side: ``python -m experiments.tagging``.

Writes, in ``--workdir`` (default ``runs/tagging-<preset>``): ``tagging.md`` (per-tag P, R, F1,
N+ at n tags per image; mAP of search by word), ``zeroshot.md`` (held-out tags: Image2Vec vs ConSE
vs chance; TagProp 0 by construction), ``search.png``, ``results.json``. Features from
``--config.features_from=<run dir>:<layer>``. See experiments/configs/image2vec.py.
"""

from __future__ import annotations

from experiments import image2vec

METHODS = ("tagprop", "jec", "image2vec")

main = image2vec.make_main("tagging", METHODS)

if __name__ == "__main__":
  image2vec.common.run(main)
