"""A search's data as an MLflow dataset (`mlflow.data`), built from the outbox op's record.

The outbox keeps JSON, not arrays, so what a run logs as its input is described by
`mlflow_meta.dataset_record` and made into an `mlflow.data` dataset here, on the outbox's
thread: a `SearchDataset` with MLflow's own source classes (a local path, or the code that
makes the data), a tensor schema of features and targets, and a profile of sizes and label
settings. Its digest is the record's content hash, not one MLflow computes from a sample,
so the same arrays and labels give the same digest in every search. `dataset_input` is
what `MlflowClient.log_inputs` takes.

Imported lazily (it imports MLflow): only the driver's outbox thread and `mixtune sync` use it.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.data.dataset import Dataset
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.dataset_source_registry import get_dataset_source_from_json
from mlflow.entities import DatasetInput, InputTag
from mlflow.types.schema import Schema, TensorSpec
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from tuner import compat


def source_of(source: dict[str, str]) -> DatasetSource:
    """A local file or folder (`{"uri": ...}`: MLflow's `local` source) or the code that makes the
    data (`{"code": ...}`: its `code` source)."""
    if "code" in source:
        return CodeDatasetSource({"mlflow.source.name": source["code"]})
    return get_dataset_source_from_json(json.dumps({"uri": source["uri"]}), source_type="local")


def _tensor(spec: dict[str, Any]) -> Schema:
    return Schema([TensorSpec(np.dtype(spec["dtype"]), tuple(spec["shape"]))])


class SearchDataset(Dataset):
    """The data of a search's runs: name, content digest, source, tensor schema, profile."""

    def __init__(self, record: dict[str, Any]):
        self._record = record
        super().__init__(source=source_of(record["source"]), name=record["name"], digest=record["digest"])

    def _compute_digest(self) -> str:  # the record always has one: a content hash of the data
        return self._record["digest"]

    @property
    def profile(self) -> dict[str, Any]:
        return self._record["profile"]

    @property
    def schema(self) -> dict[str, Schema]:
        return {"features": _tensor(self._record["features"]), "targets": _tensor(self._record["targets"])}

    def to_dict(self) -> dict[str, str]:
        """MLflow's fields, the schema as `mlflow.data.from_numpy` writes it (the UI shows it)."""
        config = super().to_dict()
        config["schema"] = json.dumps({"mlflow_tensorspec": {k: v.to_json() for k, v in self.schema.items()}})
        config["profile"] = json.dumps(self.profile)
        return config


def dataset_input(record: dict[str, Any], context: str = "training") -> DatasetInput:
    """What `MlflowClient.log_inputs(run_id, datasets=[...])` takes for this record."""
    return DatasetInput(compat.dataset_entity(SearchDataset(record)), tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])
