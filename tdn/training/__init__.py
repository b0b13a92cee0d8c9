"""Stage 2, training: a TrainConfig -> Ray Train workers running DDP -> checkpoints, metrics, a registered model.

    launcher.py: TrainConfig --TorchTrainer(ScalingConfig, RunConfig)--> one loop per worker
    loop.py:     shards --pipeline.loading--> batches --model, optim.py (SGD, per-iteration steps)--> checkpoints
                 rank 0 --tdn.tracking--> MLflow run, model registry
"""
