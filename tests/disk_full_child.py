"""Run an experiment (``python tests/disk_full_child.py <module> <flags...>``) as one process of a
multi-process job whose checkpoint writes fail as a full disk does from step
``LB_TEST_FULL_FROM_STEP`` on, on the processes listed in ``LB_TEST_FULL_ON`` (e.g. ``0,1``).
The failure is injected where tests/test_reliability.py injects it (Orbax's hand-off of each
array to TensorStore), in this process only. Not a test module: tests/test_reliability.py
starts it."""

from __future__ import annotations

import errno
import os
import re
import runpy
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from orbax.checkpoint._src.serialization import serialization as ocp_serialization  # noqa: E402


def main():
  me = os.environ["LB_PROCESS_ID"]
  if me in os.environ["LB_TEST_FULL_ON"].split(","):
    first = int(os.environ["LB_TEST_FULL_FROM_STEP"])
    real = ocp_serialization.async_serialize_from_host

    async def write(rslices, spec, **kwargs):
      m = re.search(r"/checkpoints/(\d+)", str(spec))
      if m and int(m.group(1)) >= first:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/the/array/file")
      return await real(rslices, spec, **kwargs)

    ocp_serialization.async_serialize_from_host = write
  module, sys.argv = sys.argv[1], sys.argv[1:]
  runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
  main()
