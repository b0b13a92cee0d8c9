"""Everything MLflow: tracking URI, experiments, runs, tag names, the model registry.

    mlflow_store.py: tracking URI, clients, experiments, runs, searches, tag names (the only MlflowClient maker)
    registry.py:     the final model as a registered version; models:/ URIs; version tags
    tracker.py:      rank-0 training logs, queued and retried so an MLflow outage never stops training
"""
