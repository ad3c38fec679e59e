"""Words and images in one space (the LDRD report's Image2Vec, Boakye et al. 2016).

* `text` — token streams (plain text files; the YFCC100M metadata file: user tags, title and
  description, URL-decoded), the vocabulary, word2vec's subsampling and unigram^0.75 negative
  table, (center, context) pairs; word2vec / GloVe text vectors; offline corpora, vectors and
  word-similarity lists that ship inside pip packages (`text.OFFLINE`).
* `skipgram` — skip-gram with negative sampling in JAX: embedding tables split over ``model``
  by the rules table (logical axis ``vocab``), pairs over ``data``; training with Orbax
  checkpoints and exact resume; nearest neighbours, word-similarity correlation; the planner.
* `mapping` — Image2Vec: an MLP from any run's image features to the word space (cosine or
  DeViSE ranking-hinge loss); tagging by nearest tag vectors; search by word and by image.
* `tagprop` — TagProp (sigma-ML: learned distance weights, per-tag sigmoids) and JEC.
* `metrics` — per-tag precision / recall / N+ at n tags per image, F1, retrieval mAP.
* `zeroshot` — held-out tag splits, ConSE.
* `tagsets` — images with tags (offline: digits with tags derived from their class).

Image2Vec is post hoc (a mapping over frozen features), not a `train.task.Task` family: its
inputs are feature matrices and tag sets, not image batches from the training pipeline.
"""
