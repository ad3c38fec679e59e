"""The loop is generic: a model that is not RICA (a linear autoencoder defined here, in ~40 lines)
trains through `loop.run` on a 2x4 mesh with the same data pipeline, verified checkpoints and
exact resume as the RICA network."""

from __future__ import annotations

import json
import os

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.configs import rica_yfcc
from livermore_brain import sharding as shd
from livermore_brain.data.spec import InputSpec
from livermore_brain.train import loop
from livermore_brain.train.task import Task

SIZE, K = 16, 8


@flax.struct.dataclass
class State:
  step: jax.Array
  params: dict
  opt_state: optax.OptState


class LinearAutoencoder(Task):
  """x -> W^T (W x): the simplest unsupervised model; W (K, D) has its K neurons over ``model``."""

  input_spec = InputSpec((SIZE, SIZE, 3))

  def __init__(self):
    self.tx = optax.adam(1e-2)
    self.checkpoints_seen = []

  def _init(self, key):
    w = jax.random.normal(key, (K, SIZE * SIZE * 3)) * 0.01
    params = {"w": w}
    return State(step=jnp.zeros((), jnp.int32), params=params, opt_state=self.tx.init(params))

  def abstract_state(self):
    return jax.eval_shape(self._init, jax.random.key(0))

  def state_shardings(self, mesh, rules):
    p = {"w": shd.named_shardings(mesh, {"w": ("neurons", "inputs")}, rules)["w"]}
    rep = shd.replicated(mesh)
    opt = optax.tree_map_params(
      self.tx,
      lambda _, s: s,
      self.abstract_state().opt_state,
      p,
      transform_non_params=lambda _: rep,
    )
    return State(step=rep, params=p, opt_state=opt)

  def init_state(self, key, mesh, shardings):
    return jax.jit(self._init, out_shardings=shardings)(key)

  def step_fn(self, step, mesh, shardings, rules):
    def loss(params, x):
      x = x.reshape(x.shape[0], -1)
      return jnp.mean(jnp.sum((x @ params["w"].T @ params["w"] - x) ** 2, axis=1))

    def train_step(state, batch):
      value, grads = jax.value_and_grad(loss)(state.params, batch["image"])
      updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
      params = optax.apply_updates(state.params, updates)
      new = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
      return new, {"autoencoder/loss": value}

    return jax.jit(
      train_step,
      in_shardings=(shardings, {"image": shd.batch_sharding(mesh, rules)}),
      out_shardings=(shardings, shd.replicated(mesh)),
      donate_argnums=(0,),
    )

  def meta(self, step):
    return {"phase": "only"}

  def on_checkpoint(self, state, workdir, pipeline):
    self.checkpoints_seen.append(int(state.step))


def _config(num_steps):
  c = rica_yfcc.get_config("tiny")
  c.mesh, c.num_steps, c.log_every, c.checkpoint_every = "data:2,model:4", num_steps, 5, 10
  c.tensorboard = False
  c.data.whiten = False  # whitened data is isotropic: 8 linear components cannot compress it
  return c


def test_a_non_rica_task_trains_checkpoints_and_resumes_bitwise(tmp_path):
  full, part = str(tmp_path / "full"), str(tmp_path / "part")
  task = LinearAutoencoder()
  loop.run(task, _config(30), full)
  assert task.checkpoints_seen == [10, 20, 30]
  rows = [json.loads(line) for line in open(os.path.join(full, "metrics.jsonl"))]
  assert [r["step"] for r in rows] == [5, 10, 15, 20, 25, 30]
  assert all(r["phase"] == "only" for r in rows)
  assert rows[-1]["autoencoder/loss"] < 0.8 * rows[0]["autoencoder/loss"]

  loop.run(LinearAutoencoder(), _config(15), part)  # stops at 15 (saved), then resumes to 30
  summary = loop.run(LinearAutoencoder(), _config(30), part)
  assert summary["start_step"] == 15 and summary["final_step"] == 30

  abstract = LinearAutoencoder().abstract_state()
  want, got = (
    loop.ckpt_lib.Checkpointer(os.path.join(d, "checkpoints"), async_save=False).restore_step(
      30, abstract
    )[0]
    for d in (full, part)
  )
  np.testing.assert_array_equal(np.asarray(want.params["w"]), np.asarray(got.params["w"]))
