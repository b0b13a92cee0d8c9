"""Model weights in and out: the project's checkpoint format, the released TDN checkpoints, ImageNet weights.

Every file a user hands in is read with ``torch.load(..., weights_only=True)``.
"""
