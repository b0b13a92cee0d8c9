"""Everything MLflow: tracking URI, experiments, runs, tag names, the model registry."""
