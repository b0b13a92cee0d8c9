"""The synthetic dataset: real decodable videos, official layouts, and labels carried by motion only.

The central test trains the same simple classifier (nearest centroid with per-feature within-class variance,
"diagonal LDA") twice on held-out folds: once on single-frame statistics (colour histograms of each frame,
classified frame by frame), once on frame-difference statistics (local optical-flow estimates from
consecutive frames). The first must stay near chance, the second far above it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from jobs.synthetic import main
from pipeline.synthetic.generate import SyntheticConfig, generate, load_manifest
from pipeline.synthetic.render import MOTION_CLASSES, render_clip


def decode_rgb(path: Path) -> np.ndarray:
    """All frames of a video as (T, H, W, 3) uint8, counted by decoding (never from container metadata)."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def read_frames(root: Path, rel: str) -> np.ndarray:
    path = root / rel
    if path.is_dir():  # Something-Something V1: a folder of JPEG frames
        return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(path.glob("*.jpg"))])
    return decode_rgb(path)


# ---------------------------------------------------------------- features used by the property test


def colour_histograms(frames: np.ndarray, bins: int = 4) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, bins**3) normalised joint RGB histogram of each single frame."""
    q = frames.astype(np.int64) * bins // 256
    idx = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]
    h = np.stack([np.bincount(i.ravel(), minlength=bins**3) for i in idx]).astype(np.float64)
    return h / h.sum(1, keepdims=True)


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of (T, H, W) with wrap-around borders (the synthetic scenes wrap)."""
    r = int(3 * sigma)
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    x = sum(k[i] * np.roll(x, r - i, axis=2) for i in range(2 * r + 1))
    return sum(k[i] * np.roll(x, r - i, axis=1) for i in range(2 * r + 1))


def _gradients(frames: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spatial gradients of consecutive-frame means and the temporal difference, each (T-1, H, W)."""
    g = _blur(frames.astype(np.float32).mean(-1) / 255.0, sigma)
    m = 0.5 * (g[:-1] + g[1:])
    it = g[1:] - g[:-1]
    ix = 0.5 * (np.roll(m, -1, 2) - np.roll(m, 1, 2))
    iy = 0.5 * (np.roll(m, -1, 1) - np.roll(m, 1, 1))
    return ix, iy, it


def _blocks(x: np.ndarray, block: int) -> np.ndarray:
    t, h, w = x.shape
    hb, wb = h // block, w // block
    return x[:, : hb * block, : wb * block].reshape(t, hb, block, wb, block)


def _block_flow(grads: tuple[np.ndarray, np.ndarray, np.ndarray], block: int) -> tuple[np.ndarray, ...]:
    """Lucas-Kanade flow per block between consecutive frames: u, v, valid, each (T-1, H/block, W/block)."""
    ix, iy, it = grads
    sxx, syy, sxy = (_blocks(a, block).sum((2, 4)) for a in (ix * ix, iy * iy, ix * iy))
    sxt, syt = (_blocks(a, block).sum((2, 4)) for a in (ix * it, iy * it))
    det = sxx * syy - sxy**2 + 1e-12
    u = (-syy * sxt + sxy * syt) / det
    v = (sxy * sxt - sxx * syt) / det
    min_eig = 0.5 * (sxx + syy - np.sqrt((sxx - syy) ** 2 + 4 * sxy**2))
    valid = (min_eig > 1e-5 * block * block) & (np.abs(u) < 6) & (np.abs(v) < 6)
    return np.where(valid, u, 0.0), np.where(valid, v, 0.0), valid


def motion_features(frames: np.ndarray) -> np.ndarray:
    """Frame-difference statistics of one video -> 7 numbers.

    Lucas-Kanade flow per 8x8 block gives the mean flow direction (u, v over mean speed), the trend of the
    speed over time, the fraction of moving blocks, and the flow field's divergence (zoom) and curl
    (rotation); an affine Lucas-Kanade fit per 12x12 block gives a second, local estimate of the curl.
    """
    u, v, _ = _block_flow(_gradients(frames, 1.5), 8)
    mag = np.sqrt(u * u + v * v)
    speed_t = mag.mean((1, 2))
    speed = speed_t.mean() + 1e-6
    trend = (speed_t * np.linspace(-1, 1, len(speed_t))).mean() / speed
    direction = (u.mean() / speed, v.mean() / speed)
    moving = (mag > 0.5).mean()

    grads = _gradients(frames, 1.0)
    b = 8
    u, v, valid = _block_flow(grads, b)
    div = (np.roll(u, -1, 2) - np.roll(u, 1, 2) + np.roll(v, -1, 1) - np.roll(v, 1, 1)) / (2 * b)
    curl = (np.roll(v, -1, 2) - np.roll(v, 1, 2) - np.roll(u, -1, 1) + np.roll(u, 1, 1)) / (2 * b)
    around = (
        valid & np.roll(valid, 1, 2) & np.roll(valid, -1, 2) & np.roll(valid, 1, 1) & np.roll(valid, -1, 1)
    )
    w = around & (np.sqrt(u * u + v * v) > 0.1)
    grid_div = (div * w).sum() / (w.sum() + 1e-9)
    grid_curl = (curl * w).sum() / (w.sum() + 1e-9)

    ix, iy, it = grads
    b = 12
    xs = np.arange(b) - (b - 1) / 2
    px, py = xs[None, None, None, None, :], xs[None, None, :, None, None]
    gx, gy, gt = _blocks(ix, b), _blocks(iy, b), _blocks(it, b)
    # flow model per block: u = a0 + a2 x + a3 y, v = a1 + a4 x + a5 y
    phi = np.stack([gx, gy, px * gx, py * gx, px * gy, py * gy])  # (6, T, hb, b, wb, b)
    t, hb, wb = phi.shape[1], phi.shape[2], phi.shape[4]
    phi = phi.transpose(1, 2, 4, 0, 3, 5).reshape(t, hb, wb, 6, b * b)
    a = phi @ phi.transpose(0, 1, 2, 4, 3) + 1e-4 * np.eye(6)
    rhs = -(phi @ gt.transpose(0, 1, 3, 2, 4).reshape(t, hb, wb, b * b, 1))[..., 0]
    sol = np.linalg.solve(a, rhs[..., None])[..., 0]
    energy = (gt**2).sum((2, 4))
    weight = energy / (energy.sum((1, 2), keepdims=True) + 1e-12)
    affine_curl = np.median(((sol[..., 4] - sol[..., 3]) * weight).sum((1, 2)))
    # div/curl have heavy tails (objects popping in and out): compress them so that a centroid is meaningful
    local = np.arcsinh(np.array([grid_div, grid_curl, affine_curl]) / 0.01)
    return np.array([*direction, *local, trend, moving])


def leave_one_video_out(samples: list[np.ndarray], labels: np.ndarray) -> float:
    """Accuracy of a nearest-class-centroid classifier, each feature scaled by its pooled within-class
    variance (diagonal LDA), evaluated leave-one-video-out: every sample of video i is classified by a
    classifier fitted on all other videos. ``samples[i]`` is (n_i, D): video i's frames or its one vector.

    Exact and cheap: the class statistics without video i are the totals minus video i's own sums.
    """
    classes = np.unique(labels)
    sums = np.stack([s.sum(0) for s in samples])  # (V, D)
    sqs = np.stack([(s**2).sum(0) for s in samples])
    counts = np.array([len(s) for s in samples], dtype=np.float64)
    onehot = (labels[:, None] == classes[None]).astype(np.float64)  # (V, C)
    class_sum, class_sq, class_n = onehot.T @ sums, onehot.T @ sqs, onehot.T @ counts
    hits, total = 0, 0
    for i, x in enumerate(samples):
        c = int(np.searchsorted(classes, labels[i]))
        cs, cq, cn = class_sum.copy(), class_sq.copy(), class_n.copy()
        cs[c] -= sums[i]
        cq[c] -= sqs[i]
        cn[c] -= counts[i]
        cent = cs / cn[:, None]
        var = (cq - cs**2 / cn[:, None]).sum(0) / cn.sum()
        var = np.maximum(var, 0) + 1e-6 * var.mean() + 1e-12
        d = (((x[:, None, :] - cent[None]) ** 2) / var).sum(-1)
        hits += int((classes[np.argmin(d, axis=1)] == labels[i]).sum())
        total += len(x)
    return hits / total


# ---------------------------------------------------------------- datasets


PROPERTY_CFG = SyntheticConfig(
    classes=len(MOTION_CLASSES),
    videos_per_class=10,
    seed=11,
    min_frames=16,
    max_frames=24,
    sizes=((96, 72),),
    fps=(25,),
)


@pytest.fixture(scope="module")
def property_data(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("synthetic_property")
    videos = generate(PROPERTY_CFG, root)
    frames = [decode_rgb(root / v.path) for v in videos]
    return videos, frames


def _accuracies(videos, feats, classes=None) -> tuple[float, float]:
    """(frame-level colour accuracy, video-level motion accuracy), leave-one-video-out, over the videos whose
    label is in ``classes`` (all when None)."""
    hists, motion = feats
    y = np.array([v.label for v in videos])
    keep = np.ones(len(videos), bool) if classes is None else np.isin(y, classes)
    idx = np.where(keep)[0]
    colour = leave_one_video_out([hists[i] for i in idx], y[idx])
    return colour, leave_one_video_out([motion[i : i + 1] for i in idx], y[idx])


@pytest.mark.slow
def test_single_frames_carry_no_label_but_motion_does(property_data) -> None:
    videos, frames = property_data
    assert sorted({v.num_frames for v in videos})[0] < 20
    for v, fr in zip(videos, frames):
        assert fr.shape == (v.num_frames, v.height, v.width, 3), v.path
    feats = ([colour_histograms(f) for f in frames], np.stack([motion_features(f) for f in frames]))
    n = len(MOTION_CLASSES)
    colour_acc, motion_acc = _accuracies(videos, feats)
    print(f"{n}-way held-out accuracy: single-frame colour {colour_acc:.3f}, motion {motion_acc:.3f}")
    assert colour_acc < 2.0 / n
    assert motion_acc > 5.0 / n
    # opposite pairs (left/right, zoom in/out, cw/ccw, ...): identical appearance, only the motion differs
    pair_colour, pair_motion = [], []
    for k in range(0, n, 2):
        c, m = _accuracies(videos, feats, [k, k + 1])
        print(
            f"{MOTION_CLASSES[k].ucf_name}/{MOTION_CLASSES[k + 1].ucf_name}: colour {c:.2f}, motion {m:.2f}"
        )
        pair_colour.append(c)
        pair_motion.append(m)
    assert np.mean(pair_colour) < 0.62
    assert np.mean(pair_motion) > 0.8
    # the translations (move, pan, speed up / slow down) are what the flow features estimate directly; the
    # zoom and rotation pairs depend on a local divergence / curl estimate that is noisy on 96x72 frames
    translation_pairs = [
        m
        for k, m in zip(range(0, n, 2), pair_motion)
        if "zoom" not in MOTION_CLASSES[k].motion and "rotate" not in MOTION_CLASSES[k].motion
    ]
    assert len(translation_pairs) == 6 and min(translation_pairs) >= 0.85


def test_time_reversal_swaps_opposite_motions() -> None:
    """A right-moving clip reversed in time moves left: the feature that separates them flips sign."""
    clip = render_clip("move_right", 20, 48, 64, np.random.default_rng(3))
    fwd, back = motion_features(clip), motion_features(clip[::-1])
    assert fwd[0] > 0.5 and back[0] < -0.5
    spin = render_clip("rotate_cw", 20, 48, 64, np.random.default_rng(4))
    assert np.sign(motion_features(spin)[4]) == -np.sign(motion_features(spin[::-1])[4])


def test_appearance_is_independent_of_the_class() -> None:
    """Same seed, different motion: the first frame is drawn from the same appearance stream; only the
    motion differs (the zoom classes re-spawn objects, so compare the pure translations and rotations)."""
    firsts = [
        render_clip(m, 6, 48, 64, np.random.default_rng(9))[0] for m in ("move_left", "rotate_cw", "pan_left")
    ]
    for f in firsts[1:]:
        np.testing.assert_array_equal(f, firsts[0])
    a = render_clip("move_left", 6, 48, 64, np.random.default_rng(9))
    b = render_clip("move_right", 6, 48, 64, np.random.default_rng(9))
    assert not np.array_equal(a[3], b[3])


# ---------------------------------------------------------------- decoding, layouts, determinism


def test_fixture_videos_decode_with_expected_frame_counts(synthetic_ucf101: Path) -> None:
    videos = load_manifest(synthetic_ucf101)
    assert len(videos) == 32
    lengths = [v.num_frames for v in videos]
    assert min(lengths) < 40 and max(lengths) >= 40 and len(set(lengths)) > 5
    assert len({(v.width, v.height) for v in videos}) > 1 and len({v.fps for v in videos}) > 1
    for v in videos:
        assert v.path.endswith(".mp4")
        frames = decode_rgb(synthetic_ucf101 / v.path)
        assert frames.shape == (v.num_frames, v.height, v.width, 3), v.path
        with av.open(str(synthetic_ucf101 / v.path)) as c:
            stream = c.streams.video[0]
            assert stream.codec_context.name == "h264"
            assert stream.average_rate == v.fps


def test_ucf101_annotation_files(synthetic_ucf101: Path) -> None:
    lists = synthetic_ucf101 / "ucfTrainTestlist"
    class_ind = (lists / "classInd.txt").read_bytes()
    assert class_ind.startswith(b"1 MoveLeft\r\n2 MoveRight\r\n") and class_ind.count(b"\r\n") == 4
    listed_test = []
    for split in (1, 2, 3):
        train = (lists / f"trainlist{split:02d}.txt").read_bytes().decode()
        test = (lists / f"testlist{split:02d}.txt").read_bytes().decode()
        assert train.endswith("\r\n") and test.endswith("\r\n") and "\n" not in train.replace("\r\n", "")
        train_entries = [line.split(" ") for line in train.split("\r\n") if line]
        test_entries = [line for line in test.split("\r\n") if line]
        assert all(len(e) == 2 for e in train_entries) and all(" " not in e for e in test_entries)
        names = {e[0] for e in train_entries} | set(test_entries)
        assert len(names) == 32 and not {e[0] for e in train_entries} & set(test_entries)
        for path, label in train_entries:
            cls = path.split("/")[0]
            assert class_ind.decode().split("\r\n")[int(label) - 1] == f"{label} {cls}"
            assert (synthetic_ucf101 / path).is_file()
        for path in test_entries:  # split k tests on groups 7k-6 .. 7k, as in UCF101
            assert 7 * split - 6 <= int(path.rsplit("_g", 1)[1][:2]) <= 7 * split
        assert {p.split("/")[0] for p in test_entries} == {"MoveLeft", "MoveRight", "MoveUp", "MoveDown"}
        listed_test.append(frozenset(test_entries))
    assert len(set(listed_test)) == 3


def test_hmdb51_and_ssv1_layouts_and_codecs(tmp_path: Path) -> None:
    cfg = SyntheticConfig(
        classes=2,
        videos_per_class=4,
        seed=5,
        codec="mpeg4",
        layout="hmdb51",
        min_frames=12,
        max_frames=20,
        sizes=((48, 32),),
        fps=(30,),
    )
    hm = tmp_path / "hmdb"
    videos = generate(cfg, hm)
    for v in videos:
        assert v.path.endswith(".avi") and v.path.split("/")[0] in ("move_left", "move_right")
        assert len(read_frames(hm, v.path)) == v.num_frames
    for cls in ("move_left", "move_right"):
        for split in (1, 2, 3):
            text = (hm / "testTrainMulti_7030_splits" / f"{cls}_test_split{split}.txt").read_text()
            lines = text.split("\n")[:-1]
            assert len(lines) == 4 and all(line.endswith(" ") for line in lines)
            flags = [line.split()[1] for line in lines]
            assert set(flags) <= {"0", "1", "2"} and "1" in flags and "2" in flags
    cfg = SyntheticConfig(
        classes=2,
        videos_per_class=4,
        seed=5,
        codec="vp9",
        layout="ssv1",
        min_frames=12,
        max_frames=20,
        sizes=((48, 32), (50, 34)),
        fps=(12,),
    )
    ss = tmp_path / "ssv1"
    videos = generate(cfg, ss)
    labels = (ss / "something-something-v1-labels.csv").read_text().splitlines()
    assert labels == ["Moving something from right to left", "Moving something from left to right"]
    rows = {
        part: (ss / f"something-something-v1-{part}.csv").read_text().splitlines()
        for part in ("train", "validation", "test")
    }
    assert all(";" in r for r in rows["train"] + rows["validation"]) and all(
        r.isdigit() for r in rows["test"]
    )
    by_id = {v.path.split("/")[1]: v for v in videos}
    for r in rows["train"] + rows["validation"]:
        vid, label = r.split(";")
        assert labels.index(label) == by_id[vid].label
    assert sorted(r.split(";")[0] for rows_ in rows.values() for r in rows_) == sorted(by_id)
    for v in videos:
        frames = read_frames(ss, v.path)
        assert frames.shape == (v.num_frames, v.height, v.width, 3)
        assert (ss / v.path / "00001.jpg").is_file()
    # VP9/WebM on request: decodes with the expected count although the container declares none
    webm = tmp_path / "vp9"
    videos = generate(
        SyntheticConfig(
            classes=2, videos_per_class=1, codec="vp9", min_frames=9, max_frames=9, sizes=((32, 32),)
        ),
        webm,
    )
    for v in videos:
        assert v.path.endswith(".webm") and len(decode_rgb(webm / v.path)) == 9


@pytest.mark.slow
def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    def digest(root: Path) -> dict[str, str]:
        return {
            str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.is_file()
        }

    args = [
        "--classes",
        "2",
        "--videos-per-class",
        "3",
        "--min-frames",
        "10",
        "--max-frames",
        "30",
        "--sizes",
        "48x32,64x48",
        "--seed",
        "7",
    ]
    assert main([str(tmp_path / "a"), *args]) == 0
    assert main([str(tmp_path / "b"), *args]) == 0
    assert main([str(tmp_path / "c"), *args[:-1], "8"]) == 0
    a, b, c = digest(tmp_path / "a"), digest(tmp_path / "b"), digest(tmp_path / "c")
    assert len(a) == 6 + 7 + 1  # videos, classInd + 6 lists, manifest
    assert a == b
    videos = [k for k in a if k.endswith(".mp4")]
    assert all(a[k] != c[k] for k in videos)
    # the other codecs too (x264's mbtree and Matroska's random ids had to be switched off for this)
    for codec in ("mpeg4", "vp9"):
        small = [
            "--classes",
            "1",
            "--videos-per-class",
            "2",
            "--min-frames",
            "8",
            "--max-frames",
            "12",
            "--codec",
            codec,
            "--seed",
            "3",
        ]
        assert main([str(tmp_path / f"{codec}1"), *small]) == 0
        assert main([str(tmp_path / f"{codec}2"), *small]) == 0
        assert digest(tmp_path / f"{codec}1") == digest(tmp_path / f"{codec}2")


@pytest.mark.slow
def test_bad_arguments_are_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for bad in (
        ["--classes", "99"],
        ["--sizes", "33x32"],
        ["--min-frames", "9", "--max-frames", "3"],
        ["--sizes", "abc"],
    ):
        assert main([str(tmp_path / "x"), *bad]) == 2
    assert not (tmp_path / "x").exists()
    assert "--classes" in capsys.readouterr().err


def test_motions_chosen_by_name(tmp_path):
    from pipeline.synthetic.generate import SyntheticConfig, generate

    cfg = SyntheticConfig(
        classes=2,
        videos_per_class=1,
        motions=("zoom_out", "pan_left"),
        min_frames=8,
        max_frames=8,
        sizes=((32, 32),),
        fps=(10,),
    )
    videos = generate(cfg, tmp_path)
    assert sorted({v.class_name for v in videos}) == ["PanLeft", "ZoomOut"]
    class_ind = (tmp_path / "ucfTrainTestlist" / "classInd.txt").read_bytes().decode().split("\r\n")
    assert class_ind[:2] == ["1 ZoomOut", "2 PanLeft"]
    with pytest.raises(ValueError, match="unknown motion 'spin'"):
        generate(SyntheticConfig(classes=1, motions=("spin",)), tmp_path / "bad")
