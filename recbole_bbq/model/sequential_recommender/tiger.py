"""TIGER: generative retrieval over RQ-VAE semantic IDs (Rajput et al., NeurIPS 2023)."""

from recbole_bbq.model.generative import GenerativeRecommender


class TIGER(GenerativeRecommender):
    """Encoder-decoder that generates the next item's semantic ID.

    The semantic IDs come from an RQ-VAE over one content vector (``rqvae.modality``, 3 x 256
    codes plus a dedup code, k-means initialised; built by the stage runner with
    :mod:`recbole_bbq.tokenizer.rqvae`) or from a published code file (``semantic_ids_from``).
    Ranking is a constrained beam search over the trie of valid IDs (``beam_size``).
    """

    # Traits: see recbole_bbq.model.traits.
    semantic_ids = "tiger"
