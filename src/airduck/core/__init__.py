"""Shared vocabulary of the pipeline (no I/O): steps, datasets, statuses, results, plans."""

from airduck.core.model import Dataset, DatasetKind, DatasetVersion, Layer, Status, StepKind, StepResult
from airduck.core.quality import Action, CheckKind, QualityResult

__all__ = ["Action", "CheckKind", "Dataset", "DatasetKind", "DatasetVersion", "Layer", "QualityResult", "Status",
           "StepKind", "StepResult"]
