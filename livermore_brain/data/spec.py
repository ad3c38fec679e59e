"""What a task asks of the input pipeline: the image shape and the fields of each batch.

    spec = InputSpec((24, 40, 3), fields=("image", "label"))
    clips = InputSpec((32, 32, 1), fields=("frames", "label"), num_frames=8)
    pipe = data.make_pipeline(cfg, spec, global_batch=B, seed=seed)

Fields (`FIELDS`): ``image`` float32 ``(b, H, W, C)``; ``frames`` float32 ``(b, T, H, W, C)``
(clips of ``num_frames`` = T frames, `data.video`; a spec asks for images or for clips, never
both); ``label`` int32 ``(b,)`` (class index of the item used in each slot); ``tags`` a numpy
array of ``b`` bytes strings (space-joined words, host-side only). Which sources provide which
field: `FIELD_SOURCES`. No TensorFlow here.
"""

from __future__ import annotations

import dataclasses

FIELDS = ("image", "label", "tags", "frames")

# Which sources provide each field (for the error when a source lacks a requested field).
FIELD_SOURCES = {
  "image": "every source",
  "label": (
    "mnist, digits, folder:<dir> with one subfolder per class, tfds:<name> with a ClassLabel "
    "'label' feature"
  ),
  "tags": "yfcc100m:<metadata file> (user tags + title words)",
  "frames": (
    "moving_mnist, video_folder:<dir>, tfds:<video dataset>, yfcc100m:<metadata file> (its "
    "video lines) with InputSpec.num_frames >= 1"
  ),
}


@dataclasses.dataclass(frozen=True)
class InputSpec:
  """``image_shape`` = ``(H, W, C)`` (H != W allowed, C in (1, 3)) of an image or of every frame
  of a clip; ``fields`` the step needs; ``num_frames`` T of a clip (0: images; >= 1 exactly when
  ``frames`` is a field)."""

  image_shape: tuple[int, int, int]
  fields: tuple[str, ...] = ("image",)
  num_frames: int = 0

  def __post_init__(self):
    shape = tuple(int(v) for v in self.image_shape)
    if len(shape) != 3:
      raise ValueError(f"InputSpec.image_shape must be (H, W, C), got {self.image_shape!r}")
    if shape[2] not in (1, 3):
      raise ValueError(f"channels must be 1 or 3, got {shape[2]}")
    if min(shape[:2]) < 1:
      raise ValueError(f"InputSpec.image_shape must be positive, got {shape}")
    fields = (self.fields,) if isinstance(self.fields, str) else tuple(self.fields)
    bad = [f for f in fields if f not in FIELDS]
    if bad or not fields or len(set(fields)) != len(fields):
      raise ValueError(
        f"InputSpec.fields={fields!r}: use distinct names from {', '.join(FIELDS)} (at least one)"
      )
    frames = int(self.num_frames)
    if ("frames" in fields) != (frames >= 1) or frames < 0 or {"image", "frames"} <= set(fields):
      raise ValueError(
        f"InputSpec(fields={fields!r}, num_frames={self.num_frames}): clips need the 'frames' "
        f"field and num_frames >= 1, images num_frames=0; not both 'image' and 'frames'"
      )
    object.__setattr__(self, "image_shape", shape)
    object.__setattr__(self, "fields", fields)
    object.__setattr__(self, "num_frames", frames)

  @classmethod
  def square(cls, image_size: int, channels: int, fields=("image",)) -> InputSpec:
    """The old ``(image_size, channels)`` form: ``(S, S, C)``."""
    return cls((int(image_size), int(image_size), int(channels)), tuple(fields))

  @property
  def height(self) -> int:
    return self.image_shape[0]

  @property
  def width(self) -> int:
    return self.image_shape[1]

  @property
  def channels(self) -> int:
    return self.image_shape[2]

  @property
  def is_video(self) -> bool:
    return self.num_frames >= 1

  @property
  def clip_shape(self) -> tuple[int, int, int, int]:
    """``(T, H, W, C)`` of one clip."""
    return (self.num_frames, *self.image_shape)


def resolve(spec: InputSpec | None, image_size=None, channels=None) -> InputSpec:
  """``spec``, or the old square ``(image_size, channels)`` form -> an `InputSpec`."""
  if spec is not None:
    if image_size is not None or channels is not None:
      raise ValueError("pass either an InputSpec or image_size= and channels=, not both")
    if not isinstance(spec, InputSpec):
      raise TypeError(f"spec must be an InputSpec, got {type(spec).__name__}")
    return spec
  if image_size is None or channels is None:
    raise ValueError("the input pipeline needs an InputSpec or image_size= and channels=")
  if int(channels) not in (1, 3):
    raise ValueError(f"channels must be 1 or 3, got {channels}")
  return InputSpec.square(image_size, channels)


def source_fields(source) -> tuple[str, ...]:
  """The fields a source object provides: image (frames for clip sources); label if it has
  classes; tags if it has tags."""
  out = ["frames" if getattr(source, "is_video", False) else "image"]
  if getattr(source, "class_names", None) is not None:
    out.append("label")
  if hasattr(source, "tags"):
    out.append("tags")
  return tuple(out)


def check_fields(spec: InputSpec, source, source_name: str) -> None:
  """One clear ValueError if ``source`` lacks a field of ``spec``."""
  have = source_fields(source)
  for f in spec.fields:
    if f not in have:
      raise ValueError(
        f"data.source={source_name!r} has no {f!r} field (it provides {', '.join(have)}); "
        f"sources with {f!r}: {FIELD_SOURCES[f]}"
      )
