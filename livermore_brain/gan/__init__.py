"""The GAN family: DCGAN-style generator and discriminator trained as a curriculum of games (the
LDRD report's "GANs with curriculum learning"), the discriminator's layers as features.

* `curriculum` — the schedule of games (resolution with fade-in, instance noise / blur,
  discriminator strength) as data; ``none`` is the one-stage control;
* `losses` — non-saturating (default), hinge and least-squares games, D accuracy;
* `nets` — `Generator`, `Discriminator` (strided convs, batch norm, progressive levels);
* `quality` — a fixed random-conv feature space: Frechet distance to held-out data, diversity;
* `task` — `GanTask` (both players in one train state, two optimizers); `features` —
  `GanFeatures`, the discriminator's layers for the transfer table.
"""
