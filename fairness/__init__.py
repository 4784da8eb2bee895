"""liftlab fairness: composition audits of datasets (and, with its own issue, per-group reports)."""
