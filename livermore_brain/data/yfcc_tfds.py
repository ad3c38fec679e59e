"""TFDS builder for YFCC100M photos with their metadata (manual download), for a one-time prepare.

Training does not need this (``data.source=yfcc100m:<file>`` streams from the metadata file and
the image folder); it is for users who prefer prepared TFRecords, e.g. to read from GCS::

    from livermore_brain.data import yfcc_tfds  # registers "yfcc100m"
    b = yfcc_tfds.Yfcc100m(data_dir="/data/tfds")
    b.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir="/data/yfcc100m"))
    # then: --config.data.source=tfds:yfcc100m --config.data.tfds_data_dir=/data/tfds

Undecodable, missing and video entries are left out (and logged with counts).
"""

from __future__ import annotations

import io
import math
import os

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from livermore_brain.data import images, tfenv, yfcc  # noqa: F401 - keeps TF off the GPUs

_INSTRUCTIONS = """\
YFCC100M cannot be downloaded automatically: it is released under a data-sharing agreement.

1. Metadata: request the "Yahoo Flickr Creative Commons 100M" dataset (Yahoo Webscope, dataset
   I3, https://webscope.sandbox.yahoo.com/catalog.php?datatype=i&did=67) or take the Multimedia
   Commons copy (s3://multimedia-commons/data/yfcc100m_dataset.bz2). Either layout works: 24
   tab-separated fields per line, or 25 with a leading line number.
2. Images: the Multimedia Commons bucket holds them as
   s3://multimedia-commons/data/images/<hash[0:3]>/<hash[3:6]>/<hash>.jpg
   (e.g. `aws s3 sync --no-sign-request s3://multimedia-commons/data/images <manual_dir>/images`);
   files named <photo id>.jpg (downloaded from the "download URL" field) work as well.
3. Put into the manual dir (default ~/tensorflow_datasets/downloads/manual/):
     <manual_dir>/yfcc100m_dataset   (or yfcc100m_dataset.bz2, or any single *.tsv file)
     <manual_dir>/images/            (the image tree; or put the images in <manual_dir> itself)
"""


def find_metadata(manual_dir: str) -> str:
  names = sorted(os.listdir(manual_dir))
  for pick in (
    lambda n: n.startswith("yfcc100m_dataset"),
    lambda n: n.endswith((".tsv", ".tsv.bz2")),
  ):
    found = [n for n in names if pick(n) and os.path.isfile(os.path.join(manual_dir, n))]
    if found:
      return os.path.join(manual_dir, found[0])
  raise ValueError(f"no YFCC100M metadata file in {manual_dir}.\n{_INSTRUCTIONS}")


class Yfcc100m(tfds.core.GeneratorBasedBuilder):
  """YFCC100M photos (Thomee et al. 2016) with id, user, dates, text, tags, geo and license."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Photos of the metadata file that have a decodable image."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS

  def _info(self) -> tfds.core.DatasetInfo:
    text = tfds.features.Text()
    return self.dataset_info_from_configs(
      description="Yahoo Flickr Creative Commons 100M: photos and their metadata.",
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Image(shape=(None, None, 3)),
          "photo_id": tfds.features.Scalar(dtype=np.int64),
          "photo_hash": text,
          "user_nsid": text,
          "user_nickname": text,
          "date_taken": text,
          "date_uploaded": tfds.features.Scalar(dtype=np.int64),  # unix time, -1 if absent
          "capture_device": text,
          "title": text,
          "description": text,
          "user_tags": tfds.features.Sequence(text),
          "machine_tags": tfds.features.Sequence(text),
          "longitude": tfds.features.Scalar(dtype=np.float32),  # NaN if not geotagged
          "latitude": tfds.features.Scalar(dtype=np.float32),
          "accuracy": tfds.features.Scalar(dtype=np.int32),  # -1 if absent
          "license_name": text,
          "license_url": text,
          "page_url": text,
          "download_url": text,
        }
      ),
      homepage="https://multimediacommons.wordpress.com/yfcc100m-core-dataset/",
    )

  def _split_generators(self, dl_manager):
    manual = os.fspath(dl_manager.manual_dir)
    metadata = find_metadata(manual)
    image_dir = os.path.join(manual, "images")
    if not os.path.isdir(image_dir):
      image_dir = manual
    return {"train": self._generate_examples(metadata, image_dir)}

  def _generate_examples(self, metadata: str, image_dir: str):
    counts: dict[str, int] = {}
    bump = lambda k: counts.__setitem__(k, counts.get(k, 0) + 1)
    for rec in yfcc.iter_records(metadata, counts):
      if rec.is_video:
        bump("skipped_videos")
        continue
      path = yfcc.find_image(image_dir, rec)
      try:
        if path is None:
          raise images.BadImage("missing_file")
        data = images.read_file(path)
        images.pyramid(images.open_image(data), min_side=1 << 30)  # full decode: validates
      except images.BadImage as e:
        bump(e.reason)
        continue
      yield str(rec.photo_id), example(rec, data)
    logging.info("yfcc100m: %s", counts)


def example(rec: yfcc.Record, image_bytes: bytes) -> dict:
  """The TFDS feature dict of one record."""
  nan = lambda v: math.nan if v is None else v
  return {
    "image": io.BytesIO(image_bytes),
    "photo_id": rec.photo_id,
    "photo_hash": rec.photo_hash,
    "user_nsid": rec.user_nsid,
    "user_nickname": rec.user_nickname,
    "date_taken": rec.date_taken,
    "date_uploaded": -1 if rec.date_uploaded is None else rec.date_uploaded,
    "capture_device": rec.capture_device,
    "title": rec.title,
    "description": rec.description,
    "user_tags": list(rec.user_tags),
    "machine_tags": list(rec.machine_tags),
    "longitude": nan(rec.longitude),
    "latitude": nan(rec.latitude),
    "accuracy": -1 if rec.accuracy is None else rec.accuracy,
    "license_name": rec.license_name,
    "license_url": rec.license_url,
    "page_url": rec.page_url,
    "download_url": rec.download_url,
  }
