"""Stage 2, training: a TrainConfig -> Ray Train workers running DDP -> checkpoints, metrics, a registered model.

config.py:        TrainConfig = model + init + data + loader + optim + run + tracking
launcher.py:      TrainConfig --TorchTrainer(ScalingConfig, RunConfig)--> one loop per worker
loop.py:          shards --pipeline.loading--> batches --model, optim.py (SGD, per-iteration steps)--> metrics
                  rank 0 --tdn.tracking--> MLflow run, model registry
checkpointing.py: starting weights (init: ImageNet, fine-tuning), resume, checkpoint.pt per epoch
rng.py, console.py: per-(seed, epoch, rank) seeding and saved RNG state; progress lines
"""
