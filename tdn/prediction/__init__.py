"""Predict: class names, embeddings and Grad-CAM maps for anyone's videos, from one file to millions.

sources.py:  SOURCE arguments (files, folders, globs, s3:// prefixes, .txt/.csv lists) -> [VideoInput]
config.py:   PredictConfig (python -m jobs.predict: one flag per field)
plan.py:     the model's recipe + flags -> PredictPlan (views, spec, overrides); output parts; rows
scoring.py:  Predictor: videos -> decoded views (pipeline/loading/raw_views.py) -> probabilities, logits,
             embeddings; Grad-CAM files (tdn/model/gradcam.py, explain.py)
replica.py:  the same Predictor in evaluation's replica pool on Ray Data (tdn/evaluation/replica_pool.py)
run.py:      predict(): list, plan, run (local or Ray), write parts atomically, resume, merge, progress
output.py:   rows -> .csv / .jsonl / .parquet, the stdout table
explain.py:  cam.png / cam.npy / cam.json per video
"""
