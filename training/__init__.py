"""Training: time-split LightGBM re-conversion models with baselines, calibration and MLflow."""
