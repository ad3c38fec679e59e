"""Training: state, optimizer, greedy pipeline schedule, jitted sharded step, checkpoints, loop."""
