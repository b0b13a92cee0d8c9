"""Where a run's numbers came from, as MLflow shows it: shard splits as dataset inputs, and source tags.

    shard split (index.json)  ─ ShardDataset.from_index(index, location, context)
        name     "<dataset>/<split>"                  e.g. "ucf101/test"
        digest   the index checksum, cut to MLflow's 36 characters (DIGEST_LIMIT)
        source   the split folder (a local path or an s3:// URI), source type "local" / "s3"
        context  training | validation | evaluation   (the input's ``mlflow.data.context`` tag)
        profile  videos, samples, classes, shards      (JSON, shown in the run's Datasets panel)
      -> .to_input(): an MLflow DatasetInput for ``MlflowClient.log_inputs``
      -> .ref():      DatasetRef (name + digest) that a metric carries, so the metric names its split

The dataset is metadata only (what ``mlflow.data.meta_dataset.MetaDataset`` logs): MLflow never reads the
shards. The entity is built directly rather than through MetaDataset + MLflow's source registry, which gives
the same record but warns that a local path "can be interpreted in multiple ways".

``source_tags(commit)``: the tags MLflow's UI fills its Source, User and Git commit fields from, taken on the
driver (``mlflow.source.name`` = the job script, ``mlflow.user`` = the launching user); ``git_commit()`` is
the commit of this checkout (training and evaluation both import it from here).
"""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from pipeline import storage

if TYPE_CHECKING:
    from mlflow.entities import DatasetInput

    from pipeline.shards.contract import ShardIndex

# MLflow's MAX_DATASET_DIGEST_SIZE (mlflow/utils/validation.py) and the width of the metrics table's
# dataset_digest column: a sha256 hex checksum (64 characters) is cut to its first 36.
DIGEST_LIMIT = 36
CONTEXT_TAG = "mlflow.data.context"  # MLflow's own input tag: the UI shows it beside the dataset

# MLflow's own run tags (mlflow/utils/mlflow_tags.py)
SOURCE_NAME_TAG = "mlflow.source.name"
SOURCE_TYPE_TAG = "mlflow.source.type"
USER_TAG = "mlflow.user"
SOURCE_GIT_COMMIT_TAG = "mlflow.source.git.commit"

Context = Literal["training", "validation", "evaluation"]
_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass(frozen=True)
class DatasetRef:
    """What a metric carries to name the split it was measured on (MLflow's dataset_name / dataset_digest)."""

    name: str  # "<dataset>/<split>"
    digest: str  # the index checksum's first DIGEST_LIMIT characters


@dataclass(frozen=True)
class ShardDataset:
    """A shard split as an MLflow dataset input (metadata only)."""

    name: str  # "<dataset>/<split>", e.g. "ucf101/test"
    digest: str  # the index checksum, cut to DIGEST_LIMIT characters
    source: str  # the split folder: a local path or an s3:// URI
    context: Context  # what the run used it for
    num_videos: int = 0  # profile: 0 = not known
    num_samples: int = 0  # profile: pre-sampled views (videos x views per video); 0 = not known
    num_classes: int = 0  # profile: 0 = not known
    num_shards: int = 0  # profile: 0 = not known

    @classmethod
    def from_index(cls, index: ShardIndex, location: str, context: Context) -> ShardDataset:
        """The split whose index.json is ``index``, read from the folder ``location``."""
        return cls(
            name=f"{index.dataset}/{index.split}",
            digest=index.checksum[:DIGEST_LIMIT],
            source=location,
            context=context,
            num_videos=index.num_videos,
            num_samples=index.num_samples,
            num_classes=len(index.classes),
            num_shards=len(index.shards),
        )

    @classmethod
    def of_split(
        cls, dataset: str, split: str, checksum: str, location: str, context: Context, num_videos: int = 0
    ) -> ShardDataset:
        """The same record from what a results row keeps (an ensemble has no index at hand)."""
        return cls(f"{dataset}/{split}", checksum[:DIGEST_LIMIT], location, context, num_videos=num_videos)

    def ref(self) -> DatasetRef:
        return DatasetRef(self.name, self.digest)

    def source_type(self) -> str:
        """MLflow's source type of the location (what its S3 / local artifact dataset sources say)."""
        return "s3" if storage.is_s3(self.source) else "local"

    def profile(self) -> str:
        fields = {
            "num_videos": self.num_videos,
            "num_samples": self.num_samples,
            "num_classes": self.num_classes,
            "num_shards": self.num_shards,
        }
        return json.dumps({k: v for k, v in fields.items() if v})

    def to_input(self) -> DatasetInput:
        from mlflow.entities import Dataset, DatasetInput, InputTag

        entity = Dataset(
            name=self.name,
            digest=self.digest,
            source_type=self.source_type(),
            source=json.dumps({"uri": self.source}),
            profile=self.profile(),
        )
        return DatasetInput(entity, tags=[InputTag(CONTEXT_TAG, self.context)])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShardDataset:
        """Back from ``to_dict`` (the journal's format); KeyError / TypeError on anything else."""
        context = str(data["context"])
        if context not in ("training", "validation", "evaluation"):
            raise ValueError(f"unknown dataset context {context!r}")
        return cls(
            str(data["name"]),
            str(data["digest"]),
            str(data["source"]),
            context,  # type: ignore[arg-type]  # checked above
            int(data.get("num_videos", 0)),
            int(data.get("num_samples", 0)),
            int(data.get("num_classes", 0)),
            int(data.get("num_shards", 0)),
        )


# ----------------------------------------------------------------------------------------------- source


def git_commit() -> str:
    """The commit of the code being launched, "-dirty" when tracked files changed ('' outside git)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=_REPO, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=_REPO,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    if out.returncode != 0:
        return ""
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def launching_user() -> str:
    """The user running this process (MLflow's own rule: getpass), 'unknown' where there is none."""
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - a container user without a passwd entry raises KeyError/OSError
        return "unknown"


def job_script() -> str:
    """The script this process runs (``sys.argv[0]``, as MLflow's fluent runs record it), relative to the
    repository when it lies inside it, e.g. ``jobs/train.py``."""
    main = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if not main:
        return "<console>"
    return os.path.relpath(main, _REPO) if main.startswith(_REPO + os.sep) else main


def source_tags(commit: str | None = None) -> dict[str, str]:
    """MLflow's Source / User / Git commit tags, taken in this process (call it on the driver).

    ``commit``: git_commit()'s answer when the caller has it already; the "-dirty" mark stays in the
    project's own tdn.git_commit tag, MLflow's gets the plain commit."""
    commit = git_commit() if commit is None else commit
    tags = {SOURCE_NAME_TAG: job_script(), SOURCE_TYPE_TAG: "LOCAL", USER_TAG: launching_user()}
    if commit:
        tags[SOURCE_GIT_COMMIT_TAG] = commit.removesuffix("-dirty")
    return tags
