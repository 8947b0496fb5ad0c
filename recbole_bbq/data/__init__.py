"""Data: embedded datasets, feature and semantic-ID files, and the multi-modal dataset hook.

``recbole_bbq.utils.create_dataset`` gives :class:`MultiModalSequentialDataset` to models whose
traits need item features or semantic IDs, and :class:`SequentialDataset` to every other
sequential model.
"""

from recbole_bbq.data.dataset import MultiModalSequentialDataset, SequentialDataset
from recbole_bbq.data.embedded import EMBEDDED_DATASETS, ensure_embedded_dataset

__all__ = [
    "EMBEDDED_DATASETS",
    "MultiModalSequentialDataset",
    "SequentialDataset",
    "ensure_embedded_dataset",
]
