"""Training batches of one rank: the epoch plan's samples (one view per video), shuffled, cropped,
flipped and decoded in loader workers.

    split index --planning.epoch_plan--> per worker: shard slices + batch count
      --shard_reading--> RawSample stream (shuffle buffer) --crop box + flip per sample (transforms)-->
      --batch_decode.batch_rows--> x (B, T, 5, 3, S, S), y (B,) int64; train_steps_per_epoch batches per rank
"""

from __future__ import annotations

from collections.abc import Generator, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from pipeline.loading.batch_decode import DecodeJob, batch_rows, decode_pool
from pipeline.loading.config import LoaderConfig
from pipeline.loading.device_batch import EncodedBatch
from pipeline.loading.planning import WorkerPlan, epoch_plan, train_steps_per_epoch
from pipeline.loading.shard_reading import RawSample, read_index, read_slices, shard_uris, shuffled
from pipeline.loading.transforms import flip_decision, multi_scale_crop_box
from pipeline.shards.contract import ShardIndex


class _TrainStream(IterableDataset):
    def __init__(
        self,
        index: ShardIndex,
        uris: list[str],
        cfg: LoaderConfig,
        rank: int,
        world_size: int,
        epoch: int,
        seed: int,
    ) -> None:
        self.index, self.uris, self.cfg = index, uris, cfg
        self.rank, self.world_size, self.seed = rank, world_size, seed
        # In shared memory: persistent loader workers read the epoch the trainer set at each new iteration,
        # and how many of its first batches to leave out (a run resumed in the middle of that epoch).
        self.epoch = torch.tensor([epoch], dtype=torch.int64).share_memory_()
        self.skip = torch.tensor([0], dtype=torch.int64).share_memory_()

    def __iter__(self) -> Iterator[tuple[torch.Tensor | EncodedBatch, torch.Tensor]]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        cfg = self.cfg
        epoch, skip = int(self.epoch[0]), int(self.skip[0])
        workers = max(1, cfg.num_workers)
        plans = epoch_plan(
            self.index, self.uris, cfg, self.rank, self.world_size, cfg.num_workers, epoch, self.seed
        )
        plan = plans[worker]
        rng = np.random.default_rng([self.seed, epoch, self.rank, worker])
        stream = self._samples(plan, epoch, rng)
        pool = decode_pool(cfg)
        try:
            for i in range(plan.num_batches):
                raws = [next(stream) for _ in range(cfg.batch_size)]
                jobs, labels = [], []
                for row, raw in enumerate(raws):
                    meta = raw.meta
                    box = multi_scale_crop_box(meta.width, meta.height, cfg.input_size, cfg.scales, rng)
                    flip, label = flip_decision(meta.label, cfg.flip, cfg.flip_label_pairs, rng)
                    jobs.append(DecodeJob(meta, raw.frames, raw.where, [(row, box, flip)]))
                    labels.append(label)
                # The loader hands out its workers' batches in turn: this is the epoch's batch i * W + w. One
                # resumed after it is read and drawn for (the same samples, boxes and flips follow), not decoded.
                if i * workers + worker < skip:
                    continue
                x = batch_rows(jobs, len(jobs), cfg.input_size, cfg, pool)
                yield x, torch.tensor(labels, dtype=torch.int64)
        finally:
            stream.close()
            if pool is not None:
                pool.shutdown(wait=True)

    def _samples(self, plan: WorkerPlan, epoch: int, rng: np.random.Generator) -> Generator[RawSample]:
        """The worker's slice once (shuffled), then repeats of it (or of the rank's share) as padding."""
        size = self.cfg.shuffle_buffer
        yield from shuffled(read_slices(plan.slices, epoch), size, rng)
        pad_from = plan.slices or plan.fallback
        while True:
            got = 0
            for raw in shuffled(read_slices(pad_from, epoch), size, rng):
                got += 1
                yield raw
            if got == 0:
                raise ValueError(f"no samples of epoch {epoch}'s views in {[p.uri for p in pad_from]}")


class TrainLoader:
    """Iterable of (x, y) batches for one rank and epoch; ``len()`` is the (equal) number of steps.
    ``set_epoch`` moves it to another epoch; its loader workers persist (``persistent_workers``)."""

    def __init__(
        self, split_dir: str, cfg: LoaderConfig, rank: int, world_size: int, epoch: int, seed: int
    ) -> None:
        self.index = read_index(split_dir)
        self.cfg = cfg
        self.steps = train_steps_per_epoch(self.index, cfg, world_size)
        self.dataset = _TrainStream(
            self.index, shard_uris(split_dir, self.index), cfg, rank, world_size, epoch, seed
        )
        self._loader: DataLoader | None = None

    def __len__(self) -> int:
        return self.steps

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        """The next iteration yields this epoch's batches, but for its first ``skip_batches`` (a run resumed
        in the middle of the epoch): the same batches an uninterrupted epoch yields from there. Call between
        iterations, not during one."""
        self.dataset.epoch.fill_(epoch)
        self.dataset.skip.fill_(skip_batches)

    def __iter__(self) -> Iterator[tuple[torch.Tensor | EncodedBatch, torch.Tensor]]:
        cfg = self.cfg
        if cfg.num_workers == 0:
            yield from self.dataset
            return
        if self._loader is None or not cfg.persistent_workers:
            self._loader = DataLoader(
                self.dataset,
                batch_size=None,
                num_workers=cfg.num_workers,
                pin_memory=cfg.pin_memory,
                prefetch_factor=cfg.prefetch_factor,
                persistent_workers=cfg.persistent_workers,
            )
        yield from self._loader


def train_loader(
    split_dir: str, cfg: LoaderConfig, rank: int, world_size: int, epoch: int, seed: int = 0
) -> TrainLoader:
    """Training batches of one rank for one epoch: x (B, T, 5, 3, S, S) float32 normalised (or uint8, see
    ``LoaderConfig.output_dtype``), y (B,) int64; ``train_steps_per_epoch`` batches on every rank."""
    return TrainLoader(str(split_dir), cfg, rank, world_size, epoch, seed)
