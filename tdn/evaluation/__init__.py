"""Stage 3, evaluation: a model + evaluation shards -> per-video scores -> metrics with their protocol.

    batch_inference.py: shards --Ray Data, pool of model replicas--> per-view softmax scores
    metrics.py:         per-view scores -> per-video scores -> top-1/top-5, per-class, confusion (NumPy only)
    results.py:         EvalResult (numbers + protocol + index checksum) -> files and an MLflow run
    ensemble.py, transfer.py, reevaluate.py: the paper's 8+16 rows, Table 4 transfer, scheduled re-evaluation
"""
