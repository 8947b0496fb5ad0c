"""Data: embedded datasets, feature and semantic-ID files, and the multi-modal dataset hook.

``recbole_bbq.utils.create_dataset`` looks here for a ``<Model>Dataset`` class first, then
uses :class:`SequentialDataset` for every other sequential model.
"""

from recbole_bbq.data.dataset import MultiModalSequentialDataset, SequentialDataset
from recbole_bbq.data.embedded import EMBEDDED_DATASETS, ensure_embedded_dataset

# Plugin models that read item features or semantic IDs use the multi-modal hook.
BBQRecDataset = BBQSASRecDataset = TIGERDataset = MMTIGERDataset = UniSRecDataset = (
    MultiModalSequentialDataset
)

__all__ = [
    "BBQRecDataset",
    "BBQSASRecDataset",
    "MMTIGERDataset",
    "TIGERDataset",
    "UniSRecDataset",
    "EMBEDDED_DATASETS",
    "MultiModalSequentialDataset",
    "SequentialDataset",
    "ensure_embedded_dataset",
]
