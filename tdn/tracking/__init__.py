"""Everything MLflow: tracking URI, experiments, runs, tag names, the model registry.

mlflow_store.py: tracking URI, clients, experiments, runs, searches, tag names (the only MlflowClient maker)
registry.py:     the final model as a registered version; models:/ URIs; version tags
tracker.py:      rank-0 training logs, queued and retried so an MLflow outage never stops training
operations.py:   the queued calls as typed records, each sent again without logging anything twice
journal.py:      the calls still unsent when training ends, kept beside the checkpoints, and their replay
lineage.py:      shard splits as MLflow dataset inputs, and the source / user / git-commit tags

``mlflow`` itself is imported inside the functions that call it, never at the top of these modules: every
Ray Train worker imports them (tag names, the Tracker type, lineage) but only rank 0 logs, and ``import
mlflow`` costs ~2 s of CPU (10-17 s wall on the shared 2-core machine, measured with ``time``). The
project's own modules are imported at the top.
"""
