"""The TDN network and its baselines: pure torch, no Ray, MLflow or file I/O.

    (N, T, 5, 3, H, W) --networks.py: TDNNet--> S-TDM on the 5-frame differences + RGB stem (temporal_modules.py)
                       --resnet.py stages with L-TDM + temporal conv in layer2..4--> (N*T, C) per segment
                       --fc, mean over T--> logits (N, classes)

flops.py counts multiply-adds and parameters of a ModelConfig.
"""
