"""TDN (Temporal Difference Networks, CVPR 2021) at scale: model, checkpoints, training, evaluation, reporting.

tdn.model        the network (pure torch)
tdn.checkpoints  weights in and out
tdn.training     Ray Train workers and their loop
tdn.evaluation   batch evaluation, metrics, results
tdn.reporting    tables from recorded results
tdn.tracking     MLflow
"""
