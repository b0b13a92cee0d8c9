"""One model replica's work: videos -> per-video class probabilities, logits, embeddings (and Grad-CAM files).

    [VideoInput] --read_views (pipeline/loading/raw_views.py, ``threads`` videos at a time; a bad video
                   becomes an error result with its quarantine stage, the others go on)-->
    uint8 (V, T, 5, S, S, 3) per video --normalise (the recipe's mean/std)--> rows of ``batch_size`` views
      --model (eval mode, no autograd)--> logits (R, C); the classifier's input (R*T, D) caught by a hook
    per video: probs = mean over its views of softmax(logits)  (evaluation's rule, metrics.py)
               logits = mean over its views; features = mean over segments and views of the pooled (D,) input
    --explain: Grad-CAM (tdn/model/gradcam.py) of view 0 (its centre crop) for the chosen class -> explain.py files

The same ``Predictor`` runs in this process (few videos) and inside each Ray Data replica (many).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.loading.raw_views import RawViews, ViewSettings, read_views
from pipeline.loading.transforms import normalise_uint8
from pipeline.shards.decode_types import VideoError
from tdn.model.gradcam import LAYER, grad_cam
from tdn.model.networks import TDNNet
from tdn.prediction.explain import Explanation, write_explanation
from tdn.prediction.sources import VideoInput


@dataclass(frozen=True)
class PredictSpec:
    """How every replica views and scores a video (resolved once on the driver)."""

    views: ViewSettings
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    class_names: tuple[str, ...]  # index order; () = unnamed (indices are shown)
    top_k: int = 5  # labels and probabilities kept per video
    batch_size: int = 8  # views per forward pass
    features: bool = False
    explain_dir: str = ""  # "" = no Grad-CAM
    explain_class: int = -1  # -1 = each video's top-1
    explain_layer: str = LAYER  # the stage Grad-CAM reads (resolved: never "auto")
    model_name: str = ""  # shown in cam.json: the model URI


@dataclass
class VideoResult:
    """One video's answer; ``error`` ("<stage>: <reason>", as the shard job's quarantine reports it) when it
    could not be read, and then no scores."""

    video: VideoInput
    probs: np.ndarray | None = None  # (C,) mean over views of the softmax
    logits: np.ndarray | None = None  # (C,) mean over views
    features: np.ndarray | None = None  # (D,) the classifier's input, mean over segments and views
    views: int = 0
    error: str = ""


class Predictor:
    """A model (eval mode, on ``device``) and the spec; ``predict`` a batch of videos."""

    def __init__(self, model: TDNNet, spec: PredictSpec, device: str = "cpu", threads: int = 1) -> None:
        self.model, self.spec, self.device, self.threads = model.eval(), spec, device, max(1, threads)
        self._pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def predict(self, videos: Sequence[VideoInput]) -> list[VideoResult]:
        read = list(self._pool.map(self._read, videos)) if self._pool else [self._read(v) for v in videos]
        results = [
            VideoResult(v, error=r) if isinstance(r, str) else VideoResult(v) for v, r in zip(videos, read)
        ]
        good = [(res, r) for res, r in zip(results, read) if not isinstance(r, str)]
        if good:
            self._score([res for res, _ in good], [r for _, r in good])
        if self.spec.explain_dir:
            for res, r in good:
                self._explain(res, r)
        return results

    def _read(self, video: VideoInput) -> RawViews | str:
        try:
            return read_views(video.uri, video.video, self.spec.views)
        except VideoError as exc:
            return f"{exc.stage}: {exc}"
        except Exception as exc:  # noqa: BLE001 - one bad video must not stop the others (as the shard job)
            return f"decode: {type(exc).__name__}: {exc}"

    def _normalised(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (R, T, 5, S, S, 3) -> float32 (R, T, 5, 3, S, S) normalised, on the device."""
        x = x.to(self.device).permute(0, 1, 2, 5, 3, 4)
        return normalise_uint8(x, mean=self.spec.mean, std=self.spec.std)

    def _score(self, results: list[VideoResult], raws: list[RawViews]) -> None:
        x = torch.cat([r.x for r in raws])
        owner = np.repeat(np.arange(len(raws)), [len(r.x) for r in raws])
        caught: list[torch.Tensor] = []
        hook = self.model.fc.register_forward_pre_hook(lambda _m, args: caught.append(args[0]))
        logits, embeddings = [], []
        try:
            with torch.inference_mode():
                for start in range(0, len(x), self.spec.batch_size):
                    caught.clear()
                    logits.append(
                        self.model(self._normalised(x[start : start + self.spec.batch_size])).float().cpu()
                    )
                    if self.spec.features:
                        rows = caught[-1].float().cpu()
                        embeddings.append(rows.view(-1, self.model.num_segments, rows.shape[-1]).mean(dim=1))
        finally:
            hook.remove()
        all_logits = torch.cat(logits).double().numpy()
        probs = torch.softmax(torch.from_numpy(all_logits), dim=1).numpy()
        feats = torch.cat(embeddings).double().numpy() if embeddings else None
        for i, res in enumerate(results):
            mine = owner == i
            res.views = int(mine.sum())
            res.probs, res.logits = probs[mine].mean(axis=0), all_logits[mine].mean(axis=0)
            res.features = feats[mine].mean(axis=0).astype(np.float32) if feats is not None else None

    def _explain(self, res: VideoResult, raw: RawViews) -> None:
        assert res.probs is not None
        spec = self.spec
        cls = spec.explain_class if spec.explain_class >= 0 else int(np.argmax(res.probs))
        crop = 2 if spec.views.crops == 3 else 0  # the centre crop (eval_boxes order: left, right, centre)
        view = raw.x[crop : crop + 1]  # clip 0
        cam = grad_cam(self.model, self._normalised(view), cls, spec.explain_layer)
        name = spec.class_names[cls] if cls < len(spec.class_names) else str(cls)
        write_explanation(
            spec.explain_dir,
            Explanation(
                video=res.video.video,
                model=spec.model_name,
                class_name=name,
                class_index=cls,
                probability=float(res.probs[cls]),
                layer=spec.explain_layer,
                frame_indices=[w[2] for w in raw.frame_indices[0]],
                crop_box=raw.boxes[crop].as_tuple(),
                source_size=raw.source_size,
                crop=crop,
            ),
            cam,
            view[0, :, 2].numpy(),
        )
