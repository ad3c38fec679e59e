r"""Word vectors: skip-gram with negative sampling — presets ``tiny``, ``cpu``, ``yfcc``.

  python -m experiments.word_vectors                       # cpu: the Lee news corpus (ships in
                                                           # the gensim wheel), ~1-2 min on 2 cores
  python -m experiments.word_vectors --config=experiments/configs/word_vectors.py:yfcc \
      --config.source=yfcc100m:/data/yfcc100m_dataset --workdir=/lustre/$USER/words \
      --config.mesh=data:-1,model:8
  python -m experiments.word_vectors --plan --config=experiments/configs/word_vectors.py:yfcc \
      --config.plan_vocab=4000000 --config.mesh=data:1,model:8   # size the tables, no data

Every field can be overridden with ``--config.<field>=<value>``.
"""

import ml_collections

from experiments.configs import base

PRESETS = ("tiny", "cpu", "yfcc")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  preset = base.check_preset(arg or "cpu", PRESETS, "word_vectors.py")
  c = ml_collections.ConfigDict()
  c.preset = preset
  c.seed = 0
  c.mesh = ""  # data:A,model:B; the tables split over model (rule vocab -> model)
  c.rules = ml_collections.ConfigDict({"vocab": "model", "batch": "data"})
  c.source = "lee"  # lee | text:<path> | yfcc100m:<metadata file>
  c.max_docs = 0  # 0: all
  c.min_count = 5
  c.max_vocab = 0  # 0: no cap
  c.pad_vocab_to = 64  # table rows: a multiple of this (and of the model axis)
  c.dim = 100
  c.window = 5
  c.sample = 1e-3  # subsampling threshold t
  c.negatives = 5
  c.table_size = 1_000_000  # unigram^0.75 negative table
  c.batch_size = 1024  # (center, context) pairs per step, over data
  c.num_steps = 3000
  c.log_every = 250
  c.checkpoint_every = 1000
  c.optimizer = ml_collections.ConfigDict(dict(name="adam", learning_rate=0.01))
  c.similarity = "wordsim353,simlex999"  # lists that ship offline (gensim wheel), or paths
  c.queries = "fire,police,government,australia,two,president,water"
  c.plan_vocab = 0  # --plan: vocabulary size to plan for (0: build the vocabulary)
  if preset == "tiny":  # tests: seconds
    c.max_docs = 40
    c.min_count = 2
    c.dim = 16
    c.table_size = 10_000
    c.batch_size = 128
    c.num_steps = 30
    c.log_every = 10
    c.checkpoint_every = 20
    c.queries = "fire"
  elif preset == "yfcc":  # the YFCC100M metadata: tags, titles, descriptions; 200-d (the report)
    c.source = "yfcc100m:/data/yfcc100m_dataset"
    c.min_count = 20
    c.max_vocab = 4_000_000
    c.pad_vocab_to = 1024
    c.dim = 200
    c.sample = 1e-4
    c.table_size = 100_000_000
    c.batch_size = 65_536
    c.num_steps = 2_000_000
    c.log_every = 1000
    c.checkpoint_every = 20_000
    c.mesh = "data:-1,model:8"
    c.queries = "missile,beach,dog,sunset,wedding,paris"
  return c
