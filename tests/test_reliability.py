"""What a run survives (issue #17): a disk that fills up during a checkpoint save (one clear line,
earlier checkpoints intact), and a kill at a random moment — also in the middle of an
asynchronous save — for every family's tiny preset (the resumed run is bitwise the uninterrupted
one). Broken checkpoints: tests/test_train.py and tests/test_multiprocess.py."""

from __future__ import annotations

import errno
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from orbax.checkpoint._src.serialization import serialization as ocp_serialization

from experiments import common
from experiments.configs import rica_yfcc
from livermore_brain import families
from livermore_brain.train import checkpoint as ckpt_lib

# The failed save's Orbax/TensorStore coroutines are reported as "ignored" when collected.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def fill_the_disk(monkeypatch, after: int = 0):
  """Every array write after the first ``after`` ones fails as a full disk does (the function
  Orbax's writer threads call to hand each array to TensorStore)."""
  real, calls = ocp_serialization.async_serialize_from_host, [0]

  async def write(*args, **kwargs):
    calls[0] += 1
    if calls[0] > after:
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/the/array/file")
    return await real(*args, **kwargs)

  monkeypatch.setattr(ocp_serialization, "async_serialize_from_host", write)


def small_state(seed):
  k = jax.random.key(seed)
  return {"w": jax.random.normal(k, (64, 32)), "step": jnp.array(seed, jnp.int32)}


@pytest.mark.parametrize("async_save", [True, False])
def test_a_full_disk_is_one_error_and_earlier_checkpoints_restore(
  tmp_path, monkeypatch, async_save
):
  d = str(tmp_path / "checkpoints")
  ck = ckpt_lib.Checkpointer(d, max_to_keep=5, async_save=async_save)
  for step in (1, 2):
    ck.save(step, small_state(step))
  ck.wait()
  fill_the_disk(monkeypatch)
  with pytest.raises(ckpt_lib.DiskFullError) as err:
    ck.save(3, small_state(3))
    ck.wait()  # an asynchronous save fails here (or at the next save)
  ck.close()  # quiet: the error was reported once
  msg = str(err.value)
  assert "\n" not in msg
  assert msg.startswith(f"no space left on device: checkpoint step 3 could not be written to {d}")
  need = 64 * 32 * 4 + 4  # bytes of the state's arrays; the files on disk are a little larger
  mb = float(msg.split("needs about ")[1].split(" kB")[0]) * 1e3
  assert need <= mb < 4 * need, msg
  assert "the earlier checkpoints (steps 1, 2) are intact" in msg
  assert msg.endswith("rerun the same command to resume from step 2")
  monkeypatch.undo()
  again = ckpt_lib.Checkpointer(d, async_save=False)
  assert again.all_steps() == [1, 2]  # the half-written step 3 is not listed
  abstract = jax.eval_shape(lambda: small_state(0))
  for step in (1, 2):
    state, meta = again.restore_step(step, abstract)
    np.testing.assert_array_equal(state["w"], small_state(step)["w"])
  again.close()


def test_a_full_disk_during_training_prints_one_line_and_exits_2(tmp_path, monkeypatch, capfd):
  """The loop's third checkpoint (step 15) hits a full disk: exit code 2, one ``error:`` line on
  stderr and no traceback; the rerun resumes from step 10."""
  c = rica_yfcc.get_config("tiny")
  c.tensorboard, c.num_steps, c.checkpoint_every = False, 20, 5
  wd = str(tmp_path)
  one_device = functools.partial(families.train, devices=jax.devices()[:1])
  monkeypatch.setattr(families, "train", one_device)
  n_arrays = len(jax.tree.leaves(families.make_task(c).abstract_state()))
  with monkeypatch.context() as m:
    fill_the_disk(m, after=2 * n_arrays)  # steps 5 and 10 are written
    with pytest.raises(SystemExit) as ex:
      common.train(c, wd)
  assert ex.value.code == 2
  err = capfd.readouterr().err
  errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
  assert len(errors) == 1 and "Traceback" not in err and "RESOURCE_EXHAUSTED" not in err, err
  assert "checkpoint step 15 could not be written" in errors[0]
  assert "(steps 5, 10) are intact" in errors[0] and "resume from step 10" in errors[0]
  summary = common.train(c, wd)
  assert summary["start_step"] == 10 and summary["final_step"] == 20
