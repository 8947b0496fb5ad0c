# -*- coding: utf-8 -*-

"""
BBQSASRec
################################################

RecBole's SASRec with the bucketed item-similarity bias of BBQRec (docs/method.md, "BBQRec
sequence model") added to the logits of its self-attention. The backbone is RecBole's
``SASRec`` unchanged: the bias is an additive per-head float tensor summed into the attention
mask, which RecBole's ``MultiHeadAttention`` already adds to the attention scores. It tests
whether the similarity re-weighting helps without touching the backbone ("non-invasive").

Reference:
    Wang-Cheng Kang et al. "Self-Attentive Sequential Recommendation." in ICDM 2018.

"""

from recbole.model.sequential_recommender.sasrec import SASRec

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
    * ``sim_source`` (str): ``cosine`` (quantized vectors) or ``codes`` (common prefix of the
      semantic-ID levels, without the dedup code).
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

        # define layers (None when sim_attention is off: plain SASRec)
        self.similarity_bias = SimilarityBias.from_config(config, dataset, self.n_heads)

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
