"""BBQRec: behaviour-bind quantization for multi-modal sequential recommendation (arXiv 2504.06636)."""

import torch
import torch.nn.functional as F
from torch import nn

from recbole_bbq.errors import ConfigError
from recbole_bbq.model.beam_search import scores_to_full_ranking
from recbole_bbq.model.generative import GenerativeRecommender
from recbole_bbq.model.layers import SimilarityBias

SCORE_MODES = ("beam", "dense", "fused", "interpolate")


class BBQRec(GenerativeRecommender):
    """Generative recommender over BBQ semantic IDs with similarity-enhanced self-attention.

    * The encoder-decoder generates the next item's behaviour-bound semantic ID (L fused codes
      plus a dedup code) from the history's IDs.
    * Similarity-enhanced self-attention: the discretized cross-modal similarity of two history
      items adds a learnable per-head bias to the encoder attention between all their tokens
      (``sim_attention``, ``sim_buckets``, ``sim_source``, ``sim_pairs``); the backbone is unchanged.
    * Sequence-to-item InfoNCE (``s2i_weight``): the pooled, projected encoder output is pulled
      towards a projection of the item's quantized behaviour/modality vectors plus a learnable
      per-item embedding (z_ID).
    * ``score_mode``: ``beam`` (constrained beam search, as TIGER), ``dense`` (the s2i head scores
      every item), ``fused`` (beam items first, then every other item by dense score) or
      ``interpolate`` (beam log-probability plus ``fusion_weight`` x the dense log-probability,
      over every item; see :func:`interpolated_scores`).
    """

    # Traits: see recbole_bbq.model.traits.
    semantic_ids = "bbq"

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        quantized = getattr(dataset, "item_quantized", None)
        if not quantized:
            raise ConfigError(
                "BBQRec needs a BBQ tokenizer artifact (quantized vectors): set semantic_ids_file to a "
                ".bbq-*.sid.npz, or let run_recbole_bbq.py --model=BBQRec build it"
            )
        self.score_mode = config["score_mode"]
        if self.score_mode not in SCORE_MODES:
            raise ConfigError(f"score_mode must be one of {SCORE_MODES}, got '{self.score_mode}'")
        self.similarity_bias = SimilarityBias.from_config(config, dataset, config["n_heads"])
        signals = sorted(s for s in quantized if s != "fused")
        self.register_buffer("item_content", torch.cat([quantized[s] for s in signals], dim=1).float())
        d_model = config["d_model"]
        self.item_projection = nn.Linear(self.item_content.shape[1], d_model)
        self.item_id_embedding = nn.Embedding(self.n_items, d_model, padding_idx=0)
        self.sequence_projection = nn.Linear(d_model, d_model)
        self.s2i_weight = float(config["s2i_weight"])
        self.s2i_temperature = float(config["s2i_temperature"])
        self.s2i_negatives = config["s2i_negatives"]
        self.fusion_weight = float(config["fusion_weight"])
        self._item_cache = None  # (weights version, item vectors) outside training
        if self.s2i_negatives not in ("batch", "all"):
            raise ConfigError(f"s2i_negatives must be 'batch' or 'all', got '{self.s2i_negatives}'")

    def attention_bias(self, history):
        if self.similarity_bias is None:
            return None
        return self.similarity_bias(history, tokens_per_item=self.item_codes.shape[1])

    def item_representations(self, items=None):
        """Unit item vectors: projected quantized content plus z_ID; all items when None.

        Outside training, all items' vectors are computed once and reused until a weight they
        depend on changes (every full-sort call would otherwise redo ``n_items`` projections).
        """
        if items is None and not torch.is_grad_enabled() and not self.training:
            key = self._item_weights_version()
            if self._item_cache is None or self._item_cache[0] != key:
                self._item_cache = (key, self._item_representations(None))
            return self._item_cache[1]
        return self._item_representations(items)

    def _item_representations(self, items):
        content = self.item_content if items is None else self.item_content[items]
        ids = self.item_id_embedding.weight if items is None else self.item_id_embedding(items)
        return F.normalize(self.item_projection(content) + ids, dim=-1)

    def _item_weights_version(self):
        """Identity and in-place version of every tensor the item vectors depend on: an optimizer
        step or ``load_state_dict`` bumps a version, ``.to()`` makes new tensors."""
        tensors = (self.item_content, *self.item_projection.parameters(), self.item_id_embedding.weight)
        return tuple((t.data_ptr(), t._version, t.shape) for t in tensors)

    def sequence_representation(self, memory, memory_mask):
        """Unit vector of the mean-pooled encoder output over real tokens."""
        valid = torch.isfinite(memory_mask[:, 0, 0, :]).unsqueeze(-1).float()
        pooled = (memory * valid).sum(dim=1) / valid.sum(dim=1).clamp(min=1.0)
        return F.normalize(self.sequence_projection(pooled), dim=-1)

    def s2i_loss(self, sequence, targets):
        if self.s2i_negatives == "all":
            # Scale the [B, d] sequence side, not the [B, N] logits.
            logits = (sequence / self.s2i_temperature) @ self.item_representations()[1:].T
            return F.cross_entropy(logits, targets - 1)
        logits = sequence @ self.item_representations(targets).T / self.s2i_temperature
        same_item = (targets.unsqueeze(0) == targets.unsqueeze(1)) & ~torch.eye(
            len(targets), dtype=torch.bool, device=targets.device
        )
        return F.cross_entropy(
            logits.masked_fill(same_item, float("-inf")), torch.arange(len(targets), device=targets.device)
        )

    def calculate_loss(self, interaction):
        memory, memory_mask, _ = self.encode(interaction)
        targets = interaction[self.POS_ITEM_ID]
        loss = self.generation_loss(memory, memory_mask, targets)
        if self.s2i_weight > 0:
            loss = loss + self.s2i_weight * self.s2i_loss(
                self.sequence_representation(memory, memory_mask), targets
            )
        return loss

    def dense_scores(self, memory, memory_mask):
        """s2i scores of every item ``[B, n_items]``, padding -inf."""
        sequence = self.sequence_representation(memory, memory_mask) / self.s2i_temperature
        scores = sequence @ self.item_representations().T
        scores[:, 0] = float("-inf")
        return scores

    def full_sort_predict(self, interaction):
        memory, memory_mask, _ = self.encode(interaction)
        if self.score_mode == "dense":
            return self.dense_scores(memory, memory_mask)
        items, scores = self.beam_search(memory, memory_mask)
        beam = scores_to_full_ranking(items, scores, self.n_items)
        if self.score_mode == "beam":
            return beam
        dense = self.dense_scores(memory, memory_mask)
        if self.score_mode == "interpolate":
            return interpolated_scores(beam, dense, self.fusion_weight)
        in_beam = torch.isfinite(beam)
        # Shift beam scores above every dense score, keeping the beam order among them.
        lowest_beam = beam.masked_fill(~in_beam, float("inf")).min(dim=1, keepdim=True).values
        highest_dense = dense[:, 1:].max(dim=1, keepdim=True).values
        return torch.where(in_beam, beam - lowest_beam + highest_dense + 1.0, dense)


def interpolated_scores(beam, dense, weight):
    """Generative and dense scores of every item, as one product of experts.

    ``log p_beam(i) + weight * log p_dense(i)``, where ``p_dense`` is the softmax of the s2i
    head's scores. An item outside the beam has no beam log-probability: it gets the beam's lowest
    one, so the dense term alone decides how it ranks against the beam's last item. A small weight
    keeps the beam's order down to its last item, then ranks the rest by the dense head (nearly
    ``fused``); a large one ranks everything by the dense head.

    Args:
        beam (torch.Tensor): ``[B, n_items]`` beam log-probabilities, -inf outside the beam.
        dense (torch.Tensor): ``[B, n_items]`` s2i scores (temperature applied), padding -inf.
        weight (float): Weight of the dense log-probability (``fusion_weight``).

    Returns:
        torch.Tensor: ``[B, n_items]`` scores, finite for every real item, padding -inf.
    """
    in_beam = torch.isfinite(beam)
    lowest_beam = beam.masked_fill(~in_beam, float("inf")).min(dim=1, keepdim=True).values
    scores = torch.where(in_beam, beam, lowest_beam) + weight * F.log_softmax(dense, dim=1)
    scores[:, 0] = float("-inf")  # padding, also when weight is 0
    return scores
