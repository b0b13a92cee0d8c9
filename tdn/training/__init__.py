"""Stage 2, training: a TrainConfig -> Ray Train workers running DDP -> checkpoints, metrics, a registered model.

config.py:        TrainConfig = model + init + data + loader + optim + run + tracking + checkpoint
launcher.py:      TrainConfig --TorchTrainer(ScalingConfig, RunConfig)--> one loop per worker
loop.py:          shards --pipeline.loading--> batches --model, optim.py (SGD, per-iteration steps)--> metrics
                  rank 0 --tdn.tracking--> MLflow run, model registry
                  epoch.py (one epoch), validation.py (val top-1/top-5 %), metric_names.py (the keys)
checkpointing.py: starting weights (init: ImageNet, fine-tuning), resume, checkpoint.pt per epoch_NNNN
selection.py:     the best checkpoint by checkpoint.monitor (kept, logged and registered); the last is kept too
system_metrics.py: MLflow's system metrics, one sampler per node
progress.py:      progress lines with ETAs, epoch / model summaries, the resume line
rng.py, console.py: per-(seed, epoch, rank) seeding and saved RNG state; writing a line once
"""
