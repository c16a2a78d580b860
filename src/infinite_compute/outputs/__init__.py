"""Outputs: what the study writes for readers - the Parquet tables' schemas and provenance (results),
their rows (rows), lm-eval-harness's metrics from saved log-probs (lm_harness), the figures'
registry (figures) and the paper (paper). Imports data, study, science and runtime; never jax."""
