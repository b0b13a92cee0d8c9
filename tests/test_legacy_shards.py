"""Shards written before the typed contract (commit 7bc65e3, tests/data/legacy_shards/README.md) still
load, train and evaluate through today's readers: the contract's records, the training loader, evaluation."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pytest
import torch

from pipeline.loading.config import LoaderConfig
from pipeline.loading.shard_reading import read_index
from pipeline.loading.train_loader import train_loader
from pipeline.shards.contract import QuarantineEntry, SampleMeta, ShardSidecar, sample_key
from tdn.evaluation.batch_inference import evaluate
from tdn.evaluation.model_source import ModelSource
from tdn.evaluation.protocol import EvalConfig
from tdn.model.networks import ModelConfig, build_model_from_config
from tests.eval_shards import save_tiny_checkpoint

LEGACY = Path(__file__).resolve().parent / "data" / "legacy_shards"
CLASSES = ["MoveLeft", "MoveRight"]


@pytest.fixture
def legacy(tmp_path: Path) -> Path:
    """A copy, so that nothing a reader might write lands in the repository."""
    return Path(shutil.copytree(LEGACY, tmp_path / "legacy_shards"))


def _sidecar(path: Path) -> ShardSidecar:
    return ShardSidecar.from_json(path.read_text(), str(path))


def _quarantine(split_dir: Path) -> list[QuarantineEntry]:
    path = split_dir / "quarantine.jsonl"
    lines = path.read_text().splitlines()
    return [QuarantineEntry.from_json(line, f"{path} line {i + 1}") for i, line in enumerate(lines)]


def test_every_legacy_file_parses_with_the_contract(legacy: Path) -> None:
    for split, views in (("train", 2), ("test", 1)):
        index = read_index(str(legacy / split))  # fields, schema and the old checksum verified
        assert index.classes == CLASSES and index.sampling.num_segments == 4
        assert (index.num_videos, index.views_per_video, index.num_samples) == (2, views, 2 * views)
        resize = index.resize
        assert (resize.short_side, resize.upscale, resize.jpeg_encoder) == (48, True, "simplejpeg")
        for entry in index.shards:
            side = _sidecar(legacy / split / f"{entry.name}.json")
            assert (side.name, side.samples, side.videos, side.bytes, side.sha256) == (
                entry.name,
                entry.samples,
                entry.videos,
                entry.bytes,
                entry.sha256,
            )
            assert side.inputs and not side.quarantine
            with tarfile.open(legacy / split / entry.name) as tar:
                metas = [
                    SampleMeta.from_json(tar.extractfile(m).read(), m.name)  # type: ignore[union-attr]
                    for m in tar.getmembers()
                    if m.name.endswith(".json")
                ]
            assert [sample_key(m.video_id, m.view) for m in metas] == [
                sample_key(v, view) for v in side.video_ids for view in range(views)
            ]
            assert all((m.width, m.height, m.num_segments) == (64, 48, 4) for m in metas)
        assert len(_quarantine(legacy / split)) == index.quarantined
    # The corrupt video's shard: no samples, not in the index, its sidecar names the failure.
    empty = _sidecar(legacy / "train" / "shard-000000.tar.json")
    assert empty.samples == 0 and [q.stage for q in empty.quarantine] == ["open"]
    assert sorted(q.stage for q in _quarantine(legacy / "train")) == ["missing", "open"]


def test_legacy_shards_train_one_step(legacy: Path) -> None:
    cfg = LoaderConfig(batch_size=2, num_workers=0, input_size=56, decode_threads=1)
    loader = train_loader(str(legacy / "train"), cfg, rank=0, world_size=1, epoch=0, seed=0)
    assert len(loader) == 1
    ((x, y),) = list(loader)
    assert isinstance(x, torch.Tensor) and x.shape == (2, 4, 5, 3, 56, 56) and sorted(y.tolist()) == [0, 1]
    torch.manual_seed(0)
    model = build_model_from_config(
        ModelConfig(arch="resnet18", num_classes=2, num_segments=4, width=0.25, dropout=0.0)
    )
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_legacy_shards_evaluate(legacy: Path, tmp_path: Path) -> None:
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt", len(CLASSES), CLASSES, num_segments=4)
    cfg = EvalConfig(input_size=56, short_side=64, engine="local", device="cpu", batch_size=4)
    out = tmp_path / "out"
    outcome = evaluate(ModelSource(uri=ckpt), str(legacy / "test"), cfg, out, log_to_mlflow=False)
    r = outcome.result
    assert (r.num_videos, r.dataset, r.split) == (2, "ucf101", "test")
    assert r.index_checksum == read_index(str(legacy / "test")).checksum
    assert sorted(outcome.video.video_ids.tolist()) == ["v_MoveLeft_g01_c01", "v_MoveRight_g01_c01"]
