"""Context prediction (Doersch et al. 2015; the LDRD report's triple-patch task): a self-supervised family.

* `arrangements` — the pair and triple tables (cells of a 3x3 grid, class labels) as data;
* `patches` — patch sampling and the guards against trivial solutions, on the device;
* `model` — shared-weight towers (ResCeption / Inception / AlexNet-style), late-fused head;
* `task` — `ContextTask` (cross-entropy, held-out arrangement accuracy), ``load_features``.
"""
