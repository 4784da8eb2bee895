"""liftlab evalhub: score subject-lifting releases against datasets in the catalog.

- :mod:`evalhub.metrics`: per-image IoU, Dice, precision, recall, DAVIS boundary F1, Boundary IoU,
  MAE and the alphamatting.com matting errors (pure NumPy/OpenCV functions);
- :mod:`evalhub.calibration`: ECE, MCE, Brier score, AUROC, reliability diagram, risk–coverage
  curve, AURC, FAR/FRR and the recommended gate threshold;
- :mod:`evalhub.stats`: seeded bootstrap CIs, the paired bootstrap test, Holm and BH corrections;
- :mod:`evalhub.datasets`, :mod:`evalhub.releases`, :mod:`evalhub.scoring`,
  :mod:`evalhub.slicing`, :mod:`evalhub.compare`, :mod:`evalhub.report`: the ``evalhub`` CLI.
"""
