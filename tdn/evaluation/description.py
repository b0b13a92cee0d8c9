"""The evaluation run's description on its MLflow page (``mlflow.note.content``, Markdown): what was evaluated,
on which shards, with which protocol, and the result. results.log_evaluation_run sets it with the run's tags.

    evaluation_description(result: EvalResult) -> str
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tdn.evaluation.results import EvalResult


def evaluation_description(result: EvalResult) -> str:
    """The run page's description (Markdown): what was evaluated, on which shards, how, and the result."""
    model = (
        f"`models:/{result.model_name}/{result.model_version}`"
        if result.model_name
        else f"`{result.model_id}`"
    )
    sizes = {
        "user": "given on the command line",
        "checkpoint": "the model's own",
        "protocol": "the protocol's",
    }
    where = f"{result.replicas} replica(s)" if result.replicas else "in the job's process (engine local)"
    frames = f"{result.frames} segments x 5 frames" + (" (an ensemble)" if result.ensemble_of else "")
    return "\n".join(
        [
            f"Evaluation of {model} ({result.variant} {result.arch}, {frames}) on **{result.dataset}/"
            f"{result.split}**: {result.num_videos} videos from `{result.shards or '?'}` (index checksum "
            f"`{result.index_checksum[:12]}`).",
            "",
            f"**Protocol** `{result.protocol}`: {result.clips} clip(s) x {result.crops} crop(s) of {result.input_size} "
            f"px from frames with a {result.short_side} px short side (sizes: "
            f"{sizes.get(result.sizes_from, result.sizes_from or '?')}), softmax averaged over the views; "
            f"{where} on {result.device or '?'}.",
            f"**Result** top-1 {result.top1_pct:.2f}%, top-5 {result.top5_pct:.2f}%, mean class top-1 "
            f"{result.mean_class_top1_pct:.2f}%, {result.ms_per_video:.1f} ms per video (loading included).",
            "",
            "Files: `report.html` (confusion matrix, per-class chart, most-confused pairs), `results.json`, "
            "`per_class.csv`, `per_video_scores.npz`.",
        ]
    )
