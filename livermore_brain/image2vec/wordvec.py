"""Word vectors: the word2vec / GloVe text formats, WordLlama's pretrained vectors that ship
offline, and word-similarity lists with their Spearman score.

Offline (in the gensim wheel, ``gensim/test/test_data/``): WordSimilarity-353 (``wordsim353.tsv``,
Finkelstein et al. 2002) and SimLex-999 (``simlex999.txt``, Hill et al. 2015). WordLlama's 256-d
``l2_supercat_256`` token embeddings (``wordllama/weights/l2_supercat_256.safetensors``, 32,000
Llama-2 SentencePiece tokens; `wordllama_vectors` keeps the ~14k whole-word pieces).
"""

from __future__ import annotations

import dataclasses
import json
import struct

import numpy as np

from livermore_brain.image2vec.text import OFFLINE, package_file, tokenize


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
