"""Base class of the generative (semantic-ID) recommenders: TIGER and BBQRec."""

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType

from recbole_bbq.errors import ConfigError
from recbole_bbq.model.beam_search import SemanticIDTrie, constrained_beam_search, scores_to_full_ranking
from recbole_bbq.model.layers import SemanticIDSeq2Seq

# Item-position index of a history item: counted back from the most recent item, or forward from
# the oldest kept one (the most recent item's index then varies with the history length).
ITEM_POSITIONS = ("from_latest", "from_oldest")


class GenerativeRecommender(SequentialRecommender):
    """Encoder-decoder over the semantic IDs of the last ``history_length`` items.

    The dataset must carry semantic IDs (``dataset.item_semantic_ids``, attached from
    ``semantic_ids_file`` by :class:`recbole_bbq.data.MultiModalSequentialDataset`). Training is
    token cross-entropy on the target's codes; full ranking is a constrained beam search over
    the trie of valid IDs, batched over users (``score_mode: beam``).
    """

    input_type = InputType.POINTWISE
    # Traits (recbole_bbq.model.traits); subclasses name their tokenizer in ``semantic_ids``.
    generative = True
    item_features = True

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        codes = getattr(dataset, "item_semantic_ids", None)
        if codes is None:
            raise ConfigError(
                f"{type(self).__name__} needs semantic IDs: set semantic_ids_file (run_recbole_bbq.py "
                f"--model={type(self).__name__} creates them) or semantic_ids_from"
            )
        negatives = config["train_neg_sample_args"] or {}
        if negatives.get("distribution", "none") != "none":
            # RecBole's point-wise sampling replaces the target of copied rows with random items,
            # which this model would learn to generate.
            raise ConfigError(
                f"{type(self).__name__} trains on the real next item only: set train_neg_sample_args: ~ "
                f"(got {negatives})"
            )
        self.beam_size = int(config["beam_size"])
        if self.beam_size < max(config["topk"]):
            raise ConfigError(
                f"beam_size ({self.beam_size}) must be at least the largest topk ({max(config['topk'])}): "
                f"beam search only ranks beam_size items"
            )
        self.history_length = min(int(config["history_length"] or self.max_seq_length), self.max_seq_length)
        # Padding-aware batches: cut each batch to its longest real history (same outputs).
        self.trim_padding = config["trim_padding"] is not False
        self.item_positions = config["item_positions"] or "from_latest"
        if self.item_positions not in ITEM_POSITIONS:
            raise ConfigError(f"item_positions must be one of {ITEM_POSITIONS}, got '{self.item_positions}'")
        self.register_buffer("item_codes", codes.long().clone())
        self.vocab_sizes = self._vocab_sizes(config["semantic_id_vocab_sizes"])
        self.trie = SemanticIDTrie(self.item_codes, self.vocab_sizes)
        self.backbone = SemanticIDSeq2Seq(
            self.vocab_sizes,
            self.history_length,
            d_model=config["d_model"],
            n_layers=config["n_layers"],
            n_decoder_layers=config["n_decoder_layers"],
            n_heads=config["n_heads"],
            d_kv=config["d_kv"],
            d_ff=config["d_ff"],
            dropout=config["dropout_prob"],
        )
        if config["torch_compile"]:
            # Histories vary in length once trimmed: dynamic shapes avoid one graph per length.
            for method in ("encode", "teacher_forcing_logits"):
                setattr(self.backbone, method, torch.compile(getattr(self.backbone, method), dynamic=True))

    def _vocab_sizes(self, pinned):
        """Codes per level: the largest code used plus one, or ``semantic_id_vocab_sizes``.

        A model with items added after training keeps the sizes it was trained with (pinned),
        since its embedding tables and output heads have one row per code.
        """
        used = (self.item_codes[1:].max(dim=0).values + 1).tolist()
        if not pinned:
            return used
        if len(pinned) != len(used) or any(u > p for u, p in zip(used, pinned)):
            raise ConfigError(
                f"semantic_id_vocab_sizes {list(pinned)} cannot hold the semantic IDs, which need "
                f"{used} codes per level"
            )
        return [int(size) for size in pinned]

    def recent_history(self, interaction):
        """The last ``history_length`` items of each history, left-aligned: ``[B, N]``, 0 = padding.

        With ``trim_padding`` (default), ``N`` is the longest kept history of the batch, not
        ``history_length``: the cut columns are padding in every row, so outputs are unchanged.
        """
        item_seq, lengths = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        kept = lengths.clamp(max=self.history_length)
        width = int(kept.max()) if self.trim_padding and len(kept) else self.history_length
        steps = torch.arange(width, device=item_seq.device)
        start = (lengths - self.history_length).clamp(min=0)
        index = (start.unsqueeze(1) + steps).clamp(max=item_seq.shape[1] - 1)
        history = item_seq.gather(1, index)
        return history.masked_fill(steps >= kept.unsqueeze(1), 0)

    def attention_bias(self, history):
        """Additive encoder self-attention bias ``[B, H, S*T, S*T]``; none for the plain model."""
        return None

    def item_position_ids(self, history):
        """``[B, S]`` position index of each history column (see ``item_positions``)."""
        steps = torch.arange(history.shape[1], device=history.device).expand_as(history)
        if self.item_positions == "from_oldest":
            return steps
        latest = (history > 0).sum(dim=1, keepdim=True) - 1
        return (latest - steps).clamp(min=0)  # padding columns: 0, masked anyway

    def encode(self, interaction):
        """Encoder memory ``[B, S*T, d]``, its key mask, and the history ``[B, S]``."""
        history = self.recent_history(interaction)
        memory, memory_mask = self.backbone.encode(
            self.item_codes[history],
            history > 0,
            self.attention_bias(history),
            self.item_position_ids(history),
        )
        return memory, memory_mask, history

    def generation_loss(self, memory, memory_mask, target_items):
        """Mean token cross-entropy of the targets' codes."""
        target_codes = self.item_codes[target_items]
        logits = self.backbone.teacher_forcing_logits(memory, memory_mask, target_codes)
        return sum(F.cross_entropy(logits[t], target_codes[:, t]) for t in range(len(logits))) / len(logits)

    def calculate_loss(self, interaction):
        memory, memory_mask, _ = self.encode(interaction)
        return self.generation_loss(memory, memory_mask, interaction[self.POS_ITEM_ID])

    def item_log_likelihood(self, memory, memory_mask, items):
        """Teacher-forced log-probability of each item's full semantic ID."""
        codes = self.item_codes[items]
        logits = self.backbone.teacher_forcing_logits(memory, memory_mask, codes)
        return sum(
            F.log_softmax(logits[t], dim=-1).gather(1, codes[:, t : t + 1]).squeeze(1)
            for t in range(len(logits))
        )

    def predict(self, interaction):
        memory, memory_mask, _ = self.encode(interaction)
        return self.item_log_likelihood(memory, memory_mask, interaction[self.ITEM_ID])

    def beam_search(self, memory, memory_mask):
        """Top ``beam_size`` valid items per user and their log-probabilities."""
        batch = memory.shape[0]

        def step_log_probs(prefix_codes, level):
            beams = prefix_codes.shape[1]
            logits = self.backbone.decode(
                memory, memory_mask, prefix_codes.reshape(batch * beams, level), beams
            )
            return F.log_softmax(logits, dim=-1).view(batch, beams, -1)

        return constrained_beam_search(self.trie, step_log_probs, batch, self.beam_size)

    def full_sort_predict(self, interaction):
        memory, memory_mask, _ = self.encode(interaction)
        items, scores = self.beam_search(memory, memory_mask)
        return scores_to_full_ranking(items, scores, self.n_items)
