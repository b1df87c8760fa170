"""Training: LightGBM re-conversion models, honest time-based evaluation, MLflow registry."""
