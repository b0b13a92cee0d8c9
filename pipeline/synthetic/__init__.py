"""Motion-only synthetic video datasets written in official dataset layouts (tests and the quickstart).

render.py: MotionClass -> frames (H, W, 3) uint8 where the classes differ only in how things move
generate.py: classes x videos -> encoded files (PyAV) + the dataset's official annotation files
"""
