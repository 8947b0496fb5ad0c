"""Length-bucketed training batches (``length_bucketing``): rows of similar history length share a
batch, so models that cut each batch to its longest real history (the generative models) skip
most of the padding.
"""

import numpy as np
import torch
from recbole.data.dataloader import TrainDataLoader


def bucketed_order(lengths, batch_size, bucket_batches, generator):
    """A row order whose consecutive ``batch_size`` chunks hold rows of similar length.

    As HuggingFace's length-grouped sampler: shuffle all rows, sort each window of
    ``bucket_batches`` batches by length (the shuffle breaks ties at random), cut the windows
    into batches and shuffle the batch order. Every row appears exactly once.

    Args:
        lengths (numpy.ndarray): ``[n]`` length of each row.
        batch_size (int): Rows per batch.
        bucket_batches (int): Batches per sorted window (larger = tighter buckets, less random
            batch composition).
        generator (torch.Generator): Source of randomness (seeded, saved with resumable runs).

    Returns:
        numpy.ndarray: A permutation of ``range(n)``.
    """
    n = len(lengths)
    order = torch.randperm(n, generator=generator).numpy()
    window = max(1, int(batch_size) * int(bucket_batches))
    for start in range(0, n, window):
        chunk = order[start : start + window]
        order[start : start + window] = chunk[np.argsort(-lengths[chunk], kind="stable")]
    batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    shuffled = torch.randperm(len(batches), generator=generator).tolist()
    return np.concatenate([batches[i] for i in shuffled]) if batches else order


class LengthBucketedTrainDataLoader(TrainDataLoader):
    """RecBole's training loader with length-bucketed shuffling.

    The underlying torch loader walks the rows in a fixed order; every epoch :meth:`__iter__`
    draws a new :func:`bucketed_order` from ``generator`` and :meth:`collate_fn` maps the walked
    positions through it. The length of a row is its history length, capped at
    ``history_length`` (what a generative model encodes) when that key is set.
    """

    def __init__(self, config, dataset, sampler, shuffle=True):
        super().__init__(config, dataset, sampler, shuffle=False)
        self.bucketed = bool(shuffle)
        lengths = dataset.inter_feat[config["ITEM_LIST_LENGTH_FIELD"]].numpy()
        cap = config["history_length"] or config["MAX_ITEM_LIST_LENGTH"]
        self._lengths = np.minimum(lengths, int(cap)) if cap else lengths
        self._bucket_batches = int(config["bucket_batches"] or 50)
        self._order = np.arange(self.sample_size)

    def __iter__(self):
        if self.bucketed:
            self._order = bucketed_order(self._lengths, self.step, self._bucket_batches, self.generator)
        return super().__iter__()

    def collate_fn(self, index):
        return super().collate_fn(self._order[np.asarray(index)])
