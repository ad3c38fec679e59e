"""The ``data`` section of every experiment config, and its validation (no TensorFlow here).

Every field is overridable from the command line as ``--config.data.<field>=<value>``.
"""

from __future__ import annotations

import ml_collections

SOURCE_FORMS = (
  "builtin[:train|test|all], photos[:train|test|all], folder:<dir>, tfds:<name>[:<split>], "
  "yfcc100m:<metadata file>, mnist[:train|test|all], digits[:train|test|all]; "
  "clips (InputSpec.num_frames >= 1): "
  "moving_mnist[:train|test|all], video_folder:<dir>, tfds:<video dataset>[:<split>], "
  "yfcc100m:<metadata file> (its video lines; files under data.image_dir)"
)
CROPS = ("auto", "center", "random", "resize")
ARRAY_SPLITS = ("train", "test", "all")


def default_config() -> ml_collections.ConfigDict:
  """Defaults: the offline ``builtin`` photos, random crops, per-image normalization + ZCA.

  Preprocessing stages, applied in this order (`stages`): ``crop`` (to the task's H x W),
  ``flip``, ``color_jitter``, ``normalize`` (else scale to [0, 1]), ``whiten``.
  """
  c = ml_collections.ConfigDict()
  # Where images come from: builtin | photos | folder:<dir> | tfds:<name>[:<split>]
  # | yfcc100m:<file> | mnist[:train|test|all] | digits[:train|test|all] (in memory, labeled;
  # default split train).
  c.source = "builtin"
  c.image_dir = ""  # yfcc100m: <image_dir>/<hash[0:3]>/<hash[3:6]>/<hash>.jpg or <photo id>.jpg
  c.tfds_data_dir = ""  # tfds: where the dataset was prepared ("" = the TFDS default)
  # Stage 1, to the task's H x W. "center" = the paper (§4): the largest centred box of aspect
  # W/H (square: smallest side -> S, centre SxS). "random" = that box scaled by
  # U[random_crop_min_scale, 1] at a random position. "resize" = the whole image resized to HxW
  # (aspect not kept). "auto" = random for builtin (~20 photos), resize for mnist / digits,
  # center otherwise.
  c.crop = "auto"
  c.random_crop_min_scale = 0.25  # random crops: side in [min_scale, 1] x the largest box
  c.grayscale = False  # luminance only (then repeated if 3 channels are asked for)
  c.flip = False  # stage 2: random horizontal flip (probability 1/2)
  # Stage 3: strength s: random brightness and contrast factors in [1 - s, 1 + s], and on
  # 3-channel images saturation; 0 = off.
  c.color_jitter = 0.0
  # Stage 4: True = per-image normalization (x - mean) / (std + eps), x in [0, 1] (RICA);
  # False = scale only: float32 in [0, 1] (supervised nets).
  c.normalize = True
  c.normalize_eps = 0.01
  # Stage 5: ZCA whitening (Coates et al. 2013 / Le et al. 2012) applied as a convolution filter,
  # fitted on images after stage 4.
  c.whiten = True
  c.whitening_samples = 50_000  # patches the ZCA is fitted on
  c.whitening_images = 64  # ... drawn from this many images (a fixed, process-independent set)
  c.whitening_patch = 9  # odd: the filter is the ZCA row of the centre pixel
  c.whitening_eps = 0.1  # ZCA regularizer, added to the eigenvalues
  c.shuffle = True  # a fresh permutation of the shard every epoch, from (seed, epoch)
  c.block_size = 960  # images per data block (paper: 960 = 5 minibatches of 192); tfds read unit
  c.num_parallel_calls = -1  # decode threads; -1 = tf.data AUTOTUNE
  c.prefetch = -1  # batches prefetched; -1 = AUTOTUNE
  c.cache_decoded = True  # keep decoded images in memory (up to cache_max_mb) for later epochs
  c.cache_max_mb = 1024
  c.index_cache = True  # yfcc100m: save the metadata index under <workdir>/yfcc_index/
  # Clips (tasks whose InputSpec has num_frames, `data.video`): the frame rate clips are sampled
  # at from video files (frames per second of the clip); 0 = every decoded frame (native rate).
  c.video_fps = 0.0
  return c


def resolve(cfg) -> ml_collections.ConfigDict:
  """A full copy of ``cfg`` over the defaults; a clear ValueError for an unknown key or value."""
  full = default_config()
  given = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg or {})
  for key, value in given.items():
    if key not in full:
      raise ValueError(
        f"unknown data config key {key!r}; valid keys: {', '.join(sorted(full.keys()))}"
      )
    full[key] = value
  if full.crop not in CROPS:
    raise ValueError(f"data.crop={full.crop!r} is not one of {', '.join(CROPS)}")
  if not 0.0 < float(full.random_crop_min_scale) <= 1.0:
    raise ValueError(
      f"data.random_crop_min_scale must be in (0, 1], got {full.random_crop_min_scale}"
    )
  if not 0.0 <= float(full.color_jitter) < 1.0:
    raise ValueError(f"data.color_jitter must be in [0, 1), got {full.color_jitter}")
  if full.whiten and (int(full.whitening_patch) < 1 or int(full.whitening_patch) % 2 == 0):
    raise ValueError(
      f"data.whitening_patch must be a positive odd number, got {full.whitening_patch}"
    )
  if float(full.video_fps) < 0:
    raise ValueError(f"data.video_fps must be >= 0 (0 = native rate), got {full.video_fps}")
  if int(full.block_size) < 1:
    raise ValueError(f"data.block_size must be >= 1, got {full.block_size}")
  return full


def parse_source(source: str) -> tuple[str, str, str]:
  """``"tfds:mnist:train"`` -> ``("tfds", "mnist", "train")``, ``"digits"`` -> ``("digits", "",
  "train")``; kinds: builtin, photos, folder, tfds, yfcc100m, mnist, digits, moving_mnist,
  video_folder."""
  kind, _, rest = str(source).partition(":")
  if kind in ("builtin", "photos") and rest in ("", *ARRAY_SPLITS):
    return kind, "", "" if rest == "all" else rest
  if kind in ("mnist", "digits", "moving_mnist") and rest in ("", *ARRAY_SPLITS):
    return kind, "", rest or "train"
  if kind in ("folder", "yfcc100m", "video_folder") and rest:
    return kind, rest, ""
  if kind == "tfds" and rest:
    name, _, split = rest.partition(":")
    return kind, name, split or "train"
  raise ValueError(f"data.source={source!r} is not understood; use one of: {SOURCE_FORMS}")
