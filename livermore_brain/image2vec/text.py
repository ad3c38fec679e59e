"""Text for word vectors: token streams, vocabulary, subsampling, the negative table, skip-gram
pairs; word vectors in the word2vec / GloVe text formats; what ships offline.

Text sources (``source`` strings, as the image sources are named):

* ``text:<path>`` — any UTF-8 text file, one document per line;
* ``yfcc100m:<path>`` — the YFCC100M metadata file (`data.yfcc.parse_line`): per photo, its user
  tags, title and description words, URL-decoded, HTML stripped (the report's "natural text corpus
  at scale");
* ``lee`` — the Lee background corpus (300 Australian news articles, 59,890 words) that ships in
  the gensim wheel as ``gensim/test/test_data/lee_background.cor`` (no download; gensim is never
  imported, only its data file is read).

Word-similarity lists that ship offline (in the same gensim wheel, ``gensim/test/test_data/``):
WordSimilarity-353 (``wordsim353.tsv``, Finkelstein et al. 2002) and SimLex-999
(``simlex999.txt``, Hill et al. 2015). Pretrained vectors that ship offline: WordLlama's 256-d
``l2_supercat_256`` token embeddings (``wordllama/weights/l2_supercat_256.safetensors``, 32,000
Llama-2 SentencePiece tokens; `wordllama_vectors` keeps the ~14k whole-word pieces).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import struct
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


# ---- word vectors in text formats ------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class WordVectors:
  """A word list and its vectors (float32 ``(V, D)``)."""

  words: tuple[str, ...]
  vectors: np.ndarray
  # phrase -> vector for words outside ``words`` (WordLlama: the mean of its subword tokens)
  fallback: object = dataclasses.field(default=None, compare=False, repr=False)

  @property
  def index(self) -> dict[str, int]:
    idx = self.__dict__.get("_index")
    if idx is None:
      idx = {}
      for i, w in enumerate(self.words):
        idx.setdefault(w, i)
      object.__setattr__(self, "_index", idx)
    return idx

  @property
  def dim(self) -> int:
    return int(self.vectors.shape[1])

  def __contains__(self, phrase: str) -> bool:
    return self.lookup(phrase) is not None

  def lookup(self, phrase: str) -> np.ndarray | None:
    """The vector of a word or tag; a multi-word tag is the mean of its words' vectors (None if
    any word is unknown)."""
    if phrase in self.index:
      return self.vectors[self.index[phrase]]
    words = tokenize(phrase)
    if words and all(w in self.index for w in words):
      return self.vectors[[self.index[w] for w in words]].mean(0)
    return self.fallback(phrase) if self.fallback is not None and words else None

  def unit(self) -> np.ndarray:
    n = np.linalg.norm(self.vectors, axis=1, keepdims=True)
    return self.vectors / np.maximum(n, 1e-12)

  def nearest(self, query: str | np.ndarray, k: int = 8, exclude_self: bool = True):
    """The ``k`` words of highest cosine similarity to a word or a vector: [(word, cosine)]."""
    v = self.lookup(query) if isinstance(query, str) else np.asarray(query, np.float32)
    if v is None:
      raise KeyError(f"{query!r} is not in the vocabulary")
    sims = self.unit() @ (v / max(np.linalg.norm(v), 1e-12))
    order = np.argsort(-sims, kind="stable")
    out = []
    for i in order:
      if exclude_self and isinstance(query, str) and self.words[i] == query:
        continue
      out.append((self.words[i], float(sims[i])))
      if len(out) == k:
        break
    return out

  def save(self, path: str) -> None:
    """word2vec text format: a ``V D`` header, then ``word v1 ... vD`` per line (a space inside
    a word becomes ``_``, as word2vec writes phrases)."""
    with open(path, "w", encoding="utf-8") as f:
      f.write(f"{len(self.words)} {self.dim}\n")
      for w, v in zip(self.words, self.vectors):
        f.write(w.replace(" ", "_") + " " + " ".join(f"{x:.6g}" for x in v) + "\n")


def load_vectors(path: str, limit: int | None = None) -> WordVectors:
  """Word vectors in the word2vec text format (``V D`` header line) or GloVe's (no header),
  detected from the first line; ``limit`` reads only the first words (files are frequency-ordered)."""
  words, rows = [], []
  with open(path, encoding="utf-8", errors="replace") as f:
    first = f.readline().rstrip("\n").split(" ")
    header = len(first) == 2 and all(p.isdigit() for p in first)
    lines = f if header else _chain([" ".join(first)], f)
    for line in lines:
      if limit is not None and len(words) >= limit:
        break
      parts = line.rstrip("\n ").split(" ")
      if len(parts) < 2:
        continue
      words.append(parts[0])
      rows.append(np.asarray(parts[1:], np.float32))
  if not rows:
    raise ValueError(f"{path}: no word vectors found")
  dims = {len(r) for r in rows}
  if len(dims) != 1:
    raise ValueError(f"{path}: vectors of different lengths {sorted(dims)}")
  if header and int(first[1]) != rows[0].shape[0]:
    raise ValueError(f"{path}: header says {first[1]} dimensions, rows have {rows[0].shape[0]}")
  return WordVectors(tuple(words), np.stack(rows))


def _chain(*its):
  for it in its:
    yield from it


def wordllama_vectors() -> WordVectors:
  """WordLlama's 256-d ``l2_supercat`` token embeddings (ship in the wordllama wheel, 16 MB;
  distilled from large language models' token embeddings), restricted to whole-word pieces: a
  SentencePiece token ``▁word`` of letters becomes ``word`` (lowercase pieces first)."""
  weights = package_file("wordllama", "weights", "l2_supercat_256.safetensors")
  tok = package_file("wordllama", "tokenizers", "l2_supercat_tokenizer_config.json")
  with open(weights, "rb") as f:  # safetensors: u64 header size, JSON header, raw tensors
    (n,) = struct.unpack("<Q", f.read(8))
    meta = json.loads(f.read(n))["embedding.weight"]
    lo, hi = meta["data_offsets"]
    f.seek(8 + n + lo)
    table = np.frombuffer(f.read(hi - lo), np.float16).reshape(meta["shape"]).astype(np.float32)
  with open(tok, encoding="utf-8") as f:
    vocab = json.load(f)["model"]["vocab"]
  pieces = sorted(
    ((p[1:].lower(), i, not p[1:].islower()) for p, i in vocab.items() if p.startswith("▁")),
    key=lambda t: (t[2], t[1]),
  )
  words, ids, seen = [], [], set()
  for w, i, _ in pieces:
    if w.isalpha() and w not in seen:
      seen.add(w)
      words.append(w)
      ids.append(i)
  fallback = None
  try:  # words that are several pieces: the mean of their pieces, as WordLlama embeds text
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(tok)

    def fallback(phrase: str):
      ids = [i for i in tokenizer.encode(phrase.lower(), add_special_tokens=False).ids if i > 2]
      return table[ids].mean(0) if ids else None
  except ImportError:  # tokenizers (a wordllama dependency) missing: whole-word pieces only
    pass
  return WordVectors(tuple(words), table[np.asarray(ids)], fallback)


def similarity_pairs(name_or_path: str) -> list[tuple[str, str, float]]:
  """(word, word, human score) from a tab-separated list (``#`` comments); ``wordsim353`` and
  ``simlex999`` name the lists that ship in the gensim wheel."""
  path = package_file(*OFFLINE[name_or_path]) if name_or_path in OFFLINE else name_or_path
  out = []
  with open(path, encoding="utf-8") as f:
    for line in f:
      if line.startswith("#") or not line.strip():
        continue
      a, b, s = line.rstrip("\n").split("\t")[:3]
      out.append((a.lower(), b.lower(), float(s)))
  return out


def word_similarity(vectors: WordVectors, pairs: list[tuple[str, str, float]]) -> dict:
  """Spearman correlation of cosine similarity with the human scores over the pairs whose two
  words both have vectors; ``coverage`` is that fraction of the list."""
  from scipy.stats import spearmanr

  got, want = [], []
  for a, b, s in pairs:
    va, vb = vectors.lookup(a), vectors.lookup(b)
    if va is None or vb is None:
      continue
    got.append(float(va @ vb / max(np.linalg.norm(va) * np.linalg.norm(vb), 1e-12)))
    want.append(s)
  rho = float(spearmanr(got, want).statistic) if len(got) >= 3 else float("nan")
  return {"spearman": rho, "pairs": len(got), "coverage": len(got) / max(len(pairs), 1)}
