"""Stage 3, evaluation: a model + evaluation shards -> per-video scores -> metrics with their protocol.

protocol.py:        the paper's protocols (ssv1x1, k400_10x3), EvalConfig, resolve_protocol -> EvalProtocol
split.py:           read_split: the split's index.json read once -> EvalSplit (folder, index, shard URIs)
model_source.py:    checkpoint / models:/name@alias / official file -> LoadedModel (weights + identity)
replica_pool.py:    shards --Ray Data, pool of model replicas--> per-video sums of per-view softmax scores
batch_inference.py: evaluate(): read the split, load, resolve the protocol once, score, time, write, log
metrics.py:         per-view scores -> per-video scores -> top-1/top-5, per-class, confusion (NumPy only)
results.py:         EvalResult (numbers + protocol + index checksum) -> files and an MLflow run
ensemble.py, transfer.py, reevaluate.py: the paper's 8+16 rows, Table 4 transfer, scheduled re-evaluation
"""
