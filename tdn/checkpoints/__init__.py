"""Model weights in and out: the project's checkpoint format, the released TDN checkpoints, ImageNet weights.

    project.py:  TDNNet + ModelConfig <--save_checkpoint / load_model_checkpoint--> checkpoint.pt (or s3://)
    official.py: released TDN .pth.tar --key mapping, conv bias folding--> TDNNet (eval mode)
    official_random.py: random weights under the released keys (to check official.py without a download)
    imagenet.py: torchvision-layout ResNet state dict --load_imagenet_weights--> both streams of a new TDNNet
    recipe.py:   Recipe (segments, protocol, sizes, mean/std, class names, variant): what the model's input must
                 look like, stored in every project checkpoint and logged model (recipe_of reads it back)

Every file a user hands in is read with ``torch.load(..., weights_only=True)`` and loaded strictly.
"""
