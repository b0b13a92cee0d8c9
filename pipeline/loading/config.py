"""The loader's settings (``loader:`` in a training or evaluation config), shared by the training and
evaluation streams, the batch decoder and the epoch planning."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pipeline.loading.transforms import DEFAULT_SCALES, label_swap_map


@dataclass
class LoaderConfig:
    batch_size: int = 8  # per rank
    num_workers: int = 2  # torch DataLoader worker processes per rank (0: decode in the calling process)
    input_size: int = 224  # side of the training crop / eval centre crop
    scales: tuple[float, ...] = DEFAULT_SCALES  # multi-scale crop sides, fractions of the shorter side
    # horizontal flip: random; swap_labels: flip and swap flip_label_pairs
    flip: Literal["none", "random", "swap_labels"] = "random"
    flip_label_pairs: list[tuple[int, int]] = field(default_factory=list)  # SSv1: (86,87),(93,94),(166,167)
    # Why 256 (jobs/capacity.py): shards already hold a seeded random mix of classes, so the buffer only
    # breaks the order inside a shard: 256 spans 4 shards of 64 videos; at 0.5-2.5 MB per sample (one view;
    # 2.5 from the grain-heavy 720p benchmark frames) that is up to 4 GB per GPU at 6 workers. Larger buys
    # no mixing the shards lack.
    shuffle_buffer: int = (
        256  # raw samples per loader worker, before decoding (~0.5 MB each at short side 320)
    )
    eval_short_side: int = 256  # validation frames resized to this shorter side before the crop
    eval_crops: Literal[1, 3] = 1  # 1: centre input_size crop; 3: three eval_short_side crops (Kinetics)
    decode_threads: int = 4  # JPEG decoding threads per loader worker
    output_dtype: Literal["float32", "uint8"] = (
        "float32"  # uint8: normalise on the device (normalise_on_device)
    )
    use_draft: bool = True  # let libjpeg decode at 1/2, 1/4, 1/8 scale when the crop allows it
    pin_memory: bool = False  # page-locked batches for asynchronous host->GPU copies
    prefetch_factor: int = 2  # batches in flight per loader worker (bounded prefetch)
    persistent_workers: bool = True  # training loader workers live across epochs (TrainLoader.set_epoch)
    # cpu: workers decode; device: workers ship JPEG bytes + boxes (device_batch.EncodedBatch) and the
    # training process decodes the batch on its device (DevicePrefetcher; nvJPEG on CUDA)
    decode: Literal["cpu", "device"] = "cpu"

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.num_workers < 0 or self.decode_threads < 1:
            raise ValueError("batch_size and decode_threads must be >= 1, num_workers >= 0")
        if self.input_size < 1 or not self.scales or any(not 0 < s <= 1 for s in self.scales):
            raise ValueError(
                f"input_size must be >= 1 and scales in (0, 1], got {self.input_size}, {self.scales}"
            )
        if self.flip not in ("none", "random", "swap_labels"):
            raise ValueError(f"flip must be 'none', 'random' or 'swap_labels', got {self.flip!r}")
        if self.output_dtype not in ("float32", "uint8"):
            raise ValueError(f"output_dtype must be 'float32' or 'uint8', got {self.output_dtype!r}")
        if self.eval_crops not in (1, 3):
            raise ValueError(f"eval_crops must be 1 or 3, got {self.eval_crops}")
        if self.decode not in ("cpu", "device") or self.prefetch_factor < 1:
            raise ValueError(
                f"decode must be 'cpu' or 'device' and prefetch_factor >= 1, got {self.decode!r}, "
                f"{self.prefetch_factor}"
            )
        label_swap_map(self.flip_label_pairs)  # rejects malformed pairs early
