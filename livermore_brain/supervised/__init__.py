"""The supervised family: convnets (ResCeption, its Inception twin, an AlexNet-style baseline;
`livermore_brain.models.convnets`) trained on labels — the transfer table's "gold standard".

* `task` — `SupervisedTask`: cross-entropy, batch norm state in the checkpoint, held-out accuracy;
* `features` — `ConvFeatures`, any exported layer's features from a run.
"""
