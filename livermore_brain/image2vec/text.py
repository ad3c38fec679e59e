"""Text for word vectors: token streams, vocabulary, subsampling, the negative table, skip-gram
pairs; the text that ships offline. Word vectors themselves (formats, WordLlama, similarity
lists): `wordvec`.

Text sources (``source`` strings, as the image sources are named):

* ``text:<path>`` — any UTF-8 text file, one document per line;
* ``yfcc100m:<path>`` — the YFCC100M metadata file (`data.yfcc.parse_line`): per photo, its user
  tags, title and description words, URL-decoded, HTML stripped (the report's "natural text corpus
  at scale");
* ``lee`` — the Lee background corpus (300 Australian news articles, 59,890 words) that ships in
  the gensim wheel as ``gensim/test/test_data/lee_background.cor`` (no download; gensim is never
  imported, only its data file is read).

`OFFLINE` also names the word-similarity lists in the same wheel (read by `wordvec`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator

import numpy as np

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_HTML = re.compile(r"<[^>]*>")


def tokenize(text: str) -> list[str]:
  """Lowercased words: runs of letters/digits (any script), inner apostrophes kept."""
  return _WORD.findall(text.lower())


# ---- offline files inside installed wheels ---------------------------------------------------
def package_file(package: str, *parts: str) -> str:
  """Path of a data file inside an installed package, found without importing the package."""
  spec = importlib.util.find_spec(package)
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError(
      f"package {package!r} is not installed (pip install {package}); it ships the data file "
      f"{'/'.join(parts)}"
    )
  path = os.path.join(spec.submodule_search_locations[0], *parts)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found in the installed {package}")
  return path


OFFLINE = {
  "lee": ("gensim", "test", "test_data", "lee_background.cor"),
  "wordsim353": ("gensim", "test", "test_data", "wordsim353.tsv"),
  "simlex999": ("gensim", "test", "test_data", "simlex999.txt"),
}


# ---- documents -------------------------------------------------------------------------------
def yfcc_document(line: str | bytes) -> list[str] | None:
  """One YFCC100M metadata line -> its words (user tags, title, description); None if malformed.

  Multi-word tags become their words; HTML in descriptions is dropped."""
  from livermore_brain.data import yfcc

  try:
    rec = yfcc.parse_line(line)
  except yfcc.MalformedLine:
    return None
  words = [w for tag in rec.user_tags for w in tokenize(tag)]
  words += tokenize(rec.title) + tokenize(_HTML.sub(" ", rec.description))
  return words


def documents(
  source: str, max_docs: int | None = None, skipped: Counter | None = None
) -> Iterator[list[str]]:
  """Token lists, one per document, from a ``source`` string (module docstring).

  Lines that cannot be used are skipped, never fatal, and counted by reason in ``skipped`` (as
  the image pipeline counts bad images): ``empty_line`` (blank, or no words after
  tokenizing), ``non_utf8`` (not valid UTF-8: dropped, not guessed at) and, for YFCC100M
  metadata, ``malformed_line`` (wrong number of fields)."""
  kind, _, arg = source.partition(":")
  if kind == "lee":
    path, parse = package_file(*OFFLINE["lee"]), tokenize
  elif kind == "text":
    path, parse = arg, tokenize
  elif kind == "yfcc100m":
    path, parse = arg, yfcc_document
  else:
    raise ValueError(f"unknown text source {source!r}: use lee, text:<path> or yfcc100m:<path>")
  if not os.path.exists(path):
    raise FileNotFoundError(f"text source {source!r}: {path} does not exist")
  skipped = Counter() if skipped is None else skipped
  n = 0
  with open(path, "rb") as f:
    for raw in f:
      if max_docs is not None and n >= max_docs:
        return
      try:
        line = raw.decode("utf-8")
      except UnicodeDecodeError:
        skipped["non_utf8"] += 1
        continue
      words = parse(line)
      if words is None:
        skipped["malformed_line"] += 1
      elif not words:
        skipped["empty_line"] += 1
      else:
        n += 1
        yield words


# ---- vocabulary, subsampling, negatives ------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Vocab:
  """Words sorted by count (descending, ties alphabetically) and their counts."""

  words: tuple[str, ...]
  counts: np.ndarray  # int64 (V,)

  @classmethod
  def build(cls, docs: Iterable[list[str]], min_count: int = 1, max_size: int | None = None):
    c = Counter(w for d in docs for w in d)
    items = sorted(((w, n) for w, n in c.items() if n >= min_count), key=lambda t: (-t[1], t[0]))
    items = items[:max_size] if max_size else items
    if not items:
      raise ValueError(f"no word occurs {min_count} or more times")
    return cls(tuple(w for w, _ in items), np.array([n for _, n in items], np.int64))

  def __len__(self) -> int:
    return len(self.words)

  @property
  def index(self) -> dict[str, int]:
    idx = self.__dict__.get("_index")
    if idx is None:
      idx = {w: i for i, w in enumerate(self.words)}
      object.__setattr__(self, "_index", idx)
    return idx

  def ids(self, words: list[str]) -> np.ndarray:
    """Token ids; out-of-vocabulary words are dropped (as word2vec does)."""
    idx = self.index
    return np.array([idx[w] for w in words if w in idx], np.int32)

  def save(self, path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
      for w, n in zip(self.words, self.counts):
        f.write(f"{w} {int(n)}\n")

  @classmethod
  def load(cls, path: str) -> Vocab:
    words, counts = [], []
    with open(path, encoding="utf-8") as f:
      for line in f:
        w, n = line.rstrip("\n").rsplit(" ", 1)
        words.append(w)
        counts.append(int(n))
    return cls(tuple(words), np.array(counts, np.int64))


def keep_probability(counts: np.ndarray, sample: float) -> np.ndarray:
  """word2vec's subsampling of frequent words: a word of relative frequency ``f`` is kept with
  probability ``min(1, (sqrt(f / t) + 1) * t / f)`` (the C release's formula; ``t = sample``);
  ``sample <= 0`` keeps every word."""
  counts = np.asarray(counts, np.float64)
  if sample <= 0:
    return np.ones_like(counts)
  f = counts / counts.sum()
  return np.minimum(1.0, (np.sqrt(f / sample) + 1.0) * sample / f)


def negative_table(counts: np.ndarray, size: int, power: float = 0.75) -> np.ndarray:
  """int32 table of ``size`` word ids in which word ``i`` fills a share ``c_i^p / sum c^p`` of the
  slots (to within one slot); a uniform index into it samples the unigram^0.75 distribution."""
  p = np.asarray(counts, np.float64) ** power
  cdf = np.cumsum(p / p.sum())
  slots = (np.arange(size, dtype=np.float64) + 0.5) / size
  return np.minimum(np.searchsorted(cdf, slots, side="right"), len(p) - 1).astype(np.int32)


def skipgram_pairs(
  ids: np.ndarray, doc: np.ndarray, window: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
  """(center, context) pairs of a token stream, word2vec's dynamic window: each center draws
  ``b`` in 1..window and pairs with every word within ``b`` on either side in the same document
  (``doc``: document id per token)."""
  n = len(ids)
  b = rng.integers(1, window + 1, size=n)
  centers, contexts = [], []
  for off in range(1, window + 1):
    i = np.arange(n - off)
    j = i + off
    same = doc[i] == doc[j]
    fwd = same & (b[i] >= off)  # i sees j
    bwd = same & (b[j] >= off)  # j sees i
    centers += [ids[i[fwd]], ids[j[bwd]]]
    contexts += [ids[j[fwd]], ids[i[bwd]]]
  return np.concatenate(centers).astype(np.int32), np.concatenate(contexts).astype(np.int32)


def pair_batches(
  docs_fn,
  vocab: Vocab,
  *,
  batch_size: int,
  window: int,
  sample: float,
  seed: int,
  chunk_docs: int = 20_000,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Endless (center, context) batches of ``batch_size``: epoch after epoch over ``docs_fn()``
  (a fresh document iterator), ``chunk_docs`` documents at a time subsampled, paired, shuffled.

  A pure function of ``seed``: batch ``k`` is the same in every run, so a resumed run skips the
  batches it has already seen and continues exactly."""
  keep = keep_probability(vocab.counts, sample)
  rng = np.random.default_rng(seed)
  buf_c, buf_x = np.zeros(0, np.int32), np.zeros(0, np.int32)

  def flush(chunk):
    ids = [vocab.ids(d) for d in chunk]
    doc = np.concatenate([np.full(len(x), k, np.int32) for k, x in enumerate(ids)])
    ids = np.concatenate(ids)
    kept = rng.random(len(ids)) < keep[ids]
    c, x = skipgram_pairs(ids[kept], doc[kept], window, rng)
    perm = rng.permutation(len(c))
    return c[perm], x[perm]

  def chunks():
    chunk = []
    for d in docs_fn():
      chunk.append(d)
      if len(chunk) == chunk_docs:
        yield chunk
        chunk = []
    if chunk:
      yield chunk

  while True:
    added = 0
    for chunk in chunks():
      c, x = flush(chunk)
      added += len(c)
      buf_c, buf_x = np.concatenate([buf_c, c]), np.concatenate([buf_x, x])
      while len(buf_c) >= batch_size:
        yield buf_c[:batch_size], buf_x[:batch_size]
        buf_c, buf_x = buf_c[batch_size:], buf_x[batch_size:]
    if not added:
      raise ValueError("the text source produced no skip-gram pairs (too short, or no vocabulary)")
