import hashlib
import numpy as np
from pipeline import synthetic
from pipeline.synthetic import SyntheticConfig, _render
from pipeline.synthetic_render import MOTION_CLASSES

def test_probe(tmp_path):
    cfg = SyntheticConfig(classes=2, videos_per_class=3, min_frames=10, max_frames=30, sizes=((48,32),(64,48)), seed=7)
    out = []
    for run in range(3):
        hs = []
        for mc in MOTION_CLASSES[:2]:
            for j in range(3):
                g, c = synthetic._ucf_group_clip(j, 3)
                rel = f"{mc.ucf_name}/v_{mc.ucf_name}_g{g:02d}_c{c:02d}.mp4"
                frames, fps = _render(cfg, mc, rel)
                hs.append(hashlib.sha256(frames.tobytes()).hexdigest()[:8])
                (tmp_path / mc.ucf_name).mkdir(exist_ok=True)
                synthetic.encode_video(frames, tmp_path / rel, "h264", fps)
                hs.append(hashlib.sha256((tmp_path / rel).read_bytes()).hexdigest()[:8])
                import shutil, os
                os.makedirs(f"/tmp/explore/probe/{run}", exist_ok=True)
                shutil.copy(tmp_path / rel, f"/tmp/explore/probe/{run}/{mc.ucf_name}_{j}.mp4")
        out.append(hs)
        print(run, hs, np.geterr())
    assert out[0] == out[1] == out[2]
