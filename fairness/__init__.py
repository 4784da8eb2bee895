"""liftlab fairness: per-group quality, gate parity and calibration of evalhub runs, with disparities,
flags and model-card reports (:mod:`fairness.report`), gap comparisons between releases
(:mod:`fairness.compare`) and composition audits of datasets (:mod:`fairness.audit`)."""
