"""The greedy, pipelined layer-wise schedule of the paper (§3.1, Fig. 3).

Layer 0 trains from step 0. Layer ``i + 1`` starts once layer ``i`` has trained
``start_after_blocks`` data blocks; from then on both train. Layer ``i + 1`` never sees layer
``i``'s *training* parameters: it is fed by a *forward copy* of them, synchronized every
``sync_every`` steps (and when layer ``i + 1`` starts). All of this is a pure function of the
step, so a resumed run follows exactly the same schedule.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class PipelineSchedule:
  num_layers: int
  start_after_steps: int  # steps layer i trains alone before layer i + 1 joins
  sync_every: int  # forward-copy synchronization period, in steps

  def __post_init__(self):
    if self.start_after_steps < 0:
      raise ValueError(f"pipeline start_after must be >= 0, got {self.start_after_steps}")
    if self.sync_every <= 0:
      raise ValueError(f"pipeline sync_every must be a positive step count, got {self.sync_every}")

  @classmethod
  def from_config(cls, num_layers: int, pipeline_cfg, batch_size: int, block_size: int):
    if block_size % batch_size:
      raise ValueError(
        f"data.block_size={block_size} must be a multiple of batch_size="
        f"{batch_size} (paper: blocks of 960 = 5 minibatches of 192)"
      )
    steps_per_block = block_size // batch_size
    return cls(
      num_layers,
      int(pipeline_cfg.start_after_blocks * steps_per_block),
      int(pipeline_cfg.sync_every),
    )

  def start_step(self, layer: int) -> int:
    return layer * self.start_after_steps

  def active(self, step: int) -> tuple[bool, ...]:
    """Which layers train at ``step``."""
    return tuple(step >= self.start_step(i) for i in range(self.num_layers))

  def stage(self, step: int) -> int:
    """Number of layers training at ``step``."""
    return sum(self.active(step))

  def sync_at(self, step: int) -> tuple[bool, ...]:
    """Which forward copies are refreshed just before ``step`` runs.

    Copy ``i`` feeds layer ``i + 1``: it is refreshed when layer ``i + 1`` starts and every
    ``sync_every`` steps while layer ``i + 1`` trains.
    """
    out = []
    for i in range(self.num_layers):
      nxt = self.start_step(i + 1) if i + 1 < self.num_layers else None
      out.append(
        nxt is not None and step >= nxt and (step == nxt or (step - nxt) % self.sync_every == 0)
      )
    return tuple(out)
