"""The TDN network and its baselines: pure torch, no Ray, MLflow or file I/O.

    (N, T, 5, 3, H, W) --networks.py: TDNNet--> S-TDM on the 5-frame differences + RGB stem (temporal_modules.py)
                       --resnet.py stages with L-TDM + temporal conv in layer2..4--> (N*T, C) per segment
                       --fc, mean over T--> logits (N, classes)

temporal_ops.py and attention_gate.py hold the temporal modules' fused operations (autograd functions with
hand-written backward passes); flops.py counts multiply-adds and parameters of a ModelConfig; gradcam.py says
where a trained model looked (Grad-CAM of layer4, per segment, for any variant).
"""
