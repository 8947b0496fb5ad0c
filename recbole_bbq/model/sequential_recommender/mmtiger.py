"""MMTIGER: the fragmented-quantization baseline (TIGER over per-modality semantic IDs)."""

from recbole_bbq.model.sequential_recommender.tiger import TIGER


class MMTIGER(TIGER):
    """TIGER over the concatenation of independently quantized per-modality codes.

    Every modality (``mmtiger_modalities``, default ``modalities``) gets its own RQ-VAE and
    codebooks, with no behaviour alignment and no shared codebook: the MQL4GRec-style
    tokenization without its pre-training, and the design BBQRec's paper argues against. The
    item's ID is ``[text codes, image codes, dedup code]``; training and constrained beam search
    are TIGER's. ``semantic_ids_from`` may list published per-modality files instead
    (e.g. ``[index_lemb, index_vitemb]``), which are concatenated in that order.
    """

    # Traits: see recbole_bbq.model.traits.
    semantic_ids = "mmtiger"
