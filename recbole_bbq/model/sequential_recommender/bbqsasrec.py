# -*- coding: utf-8 -*-

"""
BBQSASRec
################################################

RecBole's SASRec with the bucketed item-similarity bias of BBQRec (SPEC §4) added to the
logits of its self-attention. The backbone is RecBole's ``SASRec`` unchanged: the bias is an
additive per-head float tensor summed into the attention mask, which RecBole's
``MultiHeadAttention`` already adds to the attention scores. It tests whether the similarity
re-weighting helps without touching the backbone ("non-invasive").

Reference:
    Wang-Cheng Kang et al. "Self-Attentive Sequential Recommendation." in ICDM 2018.

"""

from recbole.model.sequential_recommender.sasrec import SASRec

from recbole_bbq.errors import ConfigError
from recbole_bbq.model.layers import SimilarityBias


class BBQSASRec(SASRec):
    r"""SASRec whose self-attention logits get a learnable per-head bias per similarity bucket.

    For history items p and q, the similarity of their quantized BBQ vectors (mean cosine over
    the ``sim_pairs`` signal pairs, or the length of their common semantic-ID prefix) is mapped to
    a bucket; head h adds ``w_h[bucket]`` to the logit of p attending to q. The weights start at
    zero, so a fresh model computes exactly what SASRec computes on the same weights.

    The quantized vectors and semantic IDs come from a BBQ tokenizer artifact attached to the
    dataset (``semantic_ids_file``, see :class:`recbole_bbq.data.MultiModalSequentialDataset`).

    Config keys (besides SASRec's; see ``properties/model/BBQSASRec.yaml``):

    * ``sim_attention`` (bool): add the bias; ``False`` is plain SASRec (no bias module).
    * ``sim_buckets`` (int): buckets of the cosine similarity over [-1, 1].
    * ``sim_source`` (str): ``cosine`` (quantized vectors) or ``codes`` (common code prefix).
    * ``sim_pairs`` (list | None): ``[signal, signal]`` pairs averaged by ``cosine``; ``None``
      means the cross-modal pairs plus ``[behaviour, behaviour]``.

    Args:
        config (Config): The run configuration.
        dataset (Dataset): The training dataset, with ``item_quantized`` / ``item_semantic_ids``
            attached when ``sim_attention`` is on.

    Raises:
        ConfigError: If ``sim_attention`` is on and the dataset has no tokenizer artifact, or a
            ``sim_*`` key is invalid.
    """

    # Traits: see recbole_bbq.model.traits.
    semantic_ids = "bbq"
    item_features = True

    def __init__(self, config, dataset):
        # SASRec.__init__ ends with ``self.apply(self._init_weights)``; the bias is built after it
        # so its zero initialisation is kept.
        super(BBQSASRec, self).__init__(config, dataset)

        # load parameters info
        self.sim_attention = bool(config["sim_attention"])
        self.sim_buckets = config["sim_buckets"]
        self.sim_source = config["sim_source"]
        self.sim_pairs = config["sim_pairs"]

        # define layers
        self.similarity_bias = None
        if self.sim_attention:
            self.similarity_bias = self._build_similarity_bias(config, dataset)

    def _build_similarity_bias(self, config, dataset):
        """The :class:`SimilarityBias` over the dataset's attached tokenizer artifact."""
        if self.sim_source not in ("cosine", "codes"):
            raise ConfigError(f"sim_source must be 'cosine' or 'codes', got '{self.sim_source}'")
        buckets = self.sim_buckets
        if isinstance(buckets, bool) or not isinstance(buckets, int) or buckets < 1:
            raise ConfigError(f"sim_buckets must be a positive integer, got {self.sim_buckets!r}")
        pairs = self._checked_pairs(self.sim_pairs)

        item_quantized = getattr(dataset, "item_quantized", None) or {}
        semantic_ids = getattr(dataset, "item_semantic_ids", None)
        if self.sim_source == "cosine" and not item_quantized:
            raise ConfigError(self._missing_artifact_message(config, dataset, semantic_ids is not None))
        if self.sim_source == "codes" and semantic_ids is None:
            raise ConfigError(self._missing_artifact_message(config, dataset, False))

        item_codes = None
        if self.sim_source == "codes":
            # Prefer the fused codes without the dedup level (buckets 0..L); a plain semantic-ID
            # file has only ``item_semantic_ids``.
            item_codes = (getattr(dataset, "item_signal_codes", None) or {}).get("fused", semantic_ids)
        return SimilarityBias(
            n_heads=self.n_heads,
            n_buckets=self.sim_buckets,
            item_vectors=item_quantized,
            pairs=pairs,
            item_codes=item_codes,
            source=self.sim_source,
        )

    @staticmethod
    def _checked_pairs(pairs):
        """``sim_pairs`` as a list of ``[signal, signal]`` lists, or None for the default pairs."""
        if pairs is None:
            return None
        if not isinstance(pairs, (list, tuple)) or not pairs:
            raise ConfigError(
                f"sim_pairs must be a non-empty list of [signal, signal] pairs or ~, got {pairs!r}"
            )
        for pair in pairs:
            is_pair = isinstance(pair, (list, tuple)) and len(pair) == 2
            if not (is_pair and all(isinstance(signal, str) for signal in pair)):
                raise ConfigError(
                    f"sim_pairs entries must be [signal, signal] pairs, got {pair!r} in {pairs!r}"
                )
        return [list(pair) for pair in pairs]

    def _missing_artifact_message(self, config, dataset, plain_semantic_ids):
        what = "quantized item vectors" if self.sim_source == "cosine" else "semantic IDs"
        found = (
            f"; the attached file {config['semantic_ids_file']} has semantic IDs but no quantized "
            "vectors (it is not a BBQ tokenizer artifact; use sim_source: codes or a tokenizer artifact)"
            if plain_semantic_ids
            else ""
        )
        return (
            f"BBQSASRec with sim_attention: true and sim_source: {self.sim_source} needs the {what} "
            f"of a BBQ tokenizer artifact attached to dataset '{dataset.dataset_name}'{found}. "
            "Run the tokenizer stage (recbole_bbq.tokenizer.stage.run_tokenizer_stage) and set "
            "semantic_ids_file to the artifact it writes, or set sim_attention: false for plain SASRec."
        )

    def get_attention_mask(self, item_seq, bidirectional=False):
        """SASRec's additive mask ``[B, 1, S, S]`` plus the similarity bias ``[B, H, S, S]``.

        Args:
            item_seq (torch.LongTensor): ``[B, S]`` history item ids (0 = padding).
            bidirectional (bool): Bidirectional instead of causal mask.

        Returns:
            torch.Tensor: ``[B, H, S, S]`` with the bias, ``[B, 1, S, S]`` without it.
        """
        mask = super(BBQSASRec, self).get_attention_mask(item_seq, bidirectional=bidirectional)
        if self.similarity_bias is None:
            return mask
        return mask + self.similarity_bias(item_seq)
