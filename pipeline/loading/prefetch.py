"""Batches onto the training device ahead of the step that uses them, and how long the step waited for them.

    loader (CPU workers)  --> (x uint8/float32 | EncodedBatch, y)          pinned when loader.pin_memory
      | DevicePrefetcher: batch k+1 is moved (non_blocking) or decoded (device_batch.decode_batch) on a
      |                   side CUDA stream, enqueued before batch k is handed to the step, so its copy and
      |                   nvJPEG decode overlap step k; on the CPU the same code runs inline
      v
    (x float32 (N, T, 5, 3, S, S) normalised, y (N,) int64) on the device

``WaitClock`` records the time each ``next()`` took (the step's wait for its batch): the data-wait fraction
and the p50/p95 time to the next batch that the trainer logs.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch

from pipeline.loading.device_batch import EncodedBatch, JpegDecoder, decode_batch
from pipeline.loading.transforms import normalise_on_device

Prepared = tuple[torch.Tensor, torch.Tensor, Any]  # x, y, the CUDA event marking their readiness (or None)


def batch_on_device(x: Any, device: torch.device | str, decoder: JpegDecoder | None = None) -> torch.Tensor:
    """A loader's x on ``device`` as normalised float32: an EncodedBatch is decoded there (``decoder``),
    a uint8 batch moved and normalised, a float32 batch only moved."""
    if isinstance(x, EncodedBatch):
        if decoder is None:
            raise ValueError(
                "the loader yields encoded batches (loader.decode: device), no decoder was given"
            )
        return decode_batch(x, decoder)
    return normalise_on_device(x, device)


class DevicePrefetcher:
    """Iterates (x, y) on ``device`` from a loader's (x or EncodedBatch, y) batches, one batch ahead.

    EncodedBatch inputs need ``decoder`` (its device is the target); tensors are moved and normalised there
    (``transforms.normalise_on_device``). ``len()`` is the wrapped loader's."""

    def __init__(
        self,
        batches: Iterable[tuple[Any, torch.Tensor]],
        device: str | torch.device,
        decoder: JpegDecoder | None = None,
    ) -> None:
        self.batches = batches
        self.device = torch.device(device)
        self.decoder = decoder
        if decoder is not None and decoder.device != self.device:
            raise ValueError(f"decoder works on {decoder.device}, the prefetcher feeds {self.device}")

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]

    def _to_device(self, x: Any, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return batch_on_device(x, self.device, self.decoder), y.to(self.device, non_blocking=True)

    def _prepare(self, item: tuple[Any, torch.Tensor], stream: Any) -> Prepared:
        if stream is None:
            return (*self._to_device(*item), None)
        with torch.cuda.stream(stream):
            x, y = self._to_device(*item)
            event = torch.cuda.Event()
            event.record(stream)
        return x, y, event

    def _ready(self, prepared: Prepared) -> tuple[torch.Tensor, torch.Tensor]:
        x, y, event = prepared
        if event is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_event(event)
            # Memory made on the side stream is now used on the step's stream: keep the allocator from
            # handing it out again before that stream is done with it.
            x.record_stream(current)
            y.record_stream(current)
        return x, y

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        items = iter(self.batches)
        try:
            pending = self._prepare(next(items), stream)
        except StopIteration:
            return
        for item in items:
            current, pending = pending, self._prepare(item, stream)
            yield self._ready(current)
        yield self._ready(pending)


class WaitClock:
    """Times each ``next()`` of an iterable: the step's wait for its batch."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def wrap(self, batches: Iterable[Any]) -> Iterator[Any]:
        items = iter(batches)
        while True:
            t0 = time.perf_counter()
            try:
                item = next(items)
            except StopIteration:
                return
            self.waits.append(time.perf_counter() - t0)
            yield item

    def summary(self, total_seconds: float) -> dict[str, float]:
        """data_wait_frac (waits / total time), next_batch_p50_s and next_batch_p95_s."""
        waits = np.asarray(self.waits or [0.0])
        return {
            "data_wait_frac": float(waits.sum() / total_seconds) if total_seconds > 0 else 0.0,
            "next_batch_p50_s": float(np.percentile(waits, 50)),
            "next_batch_p95_s": float(np.percentile(waits, 95)),
        }
