"""Layers shared by the plugin models: the discretized similarity bias and the TIGER-style
encoder-decoder (docs/method.md, "BBQRec sequence model")."""

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from recbole_bbq.errors import ConfigError

BEHAVIOUR = "behaviour"


def default_similarity_pairs(modalities):
    """Cross-modal pairs (both directions) plus behaviour; one modality is paired with itself."""
    modalities = list(modalities)
    cross = [list(pair) for pair in itertools.permutations(modalities, 2)]
    return (cross or [[m, m] for m in modalities]) + [[BEHAVIOUR, BEHAVIOUR]]


# The config keys of the similarity bias, all read by :meth:`SimilarityBias.from_config`.
SIMILARITY_KEYS = ("sim_attention", "sim_buckets", "sim_source", "sim_pairs")


class SimilarityBias(nn.Module):
    """Per-head attention bias from the discretized similarity of two items.

    For history items p and q, the bucket is one of:

    - vectors (``sim_source: cosine``): the mean over the signal pairs ``(a, b)`` of
      ``cos(zhat^a_p, zhat^b_q)``, bucketized into ``n_buckets`` equal bins over [-1, 1];
    - codes (``sim_source: codes``): how many of their semantic-ID levels agree from the first
      level on, 0..L. The levels are the item's codes **without the dedup code** (the BBQ
      artifact's fused codes), so there are L + 1 buckets, and two items that share every level
      land in the top bucket whatever their dedup codes.

    Head h adds a learnable ``w_h[bucket]`` to the attention logit between p and q (see
    docs/method.md, "BBQRec sequence model"). The weights start at zero, so a fresh bias is inert.
    Models build it with :meth:`from_config`.

    Args:
        n_heads (int): Attention heads.
        n_buckets (int): Buckets of the cosine similarity (ignored for codes).
        item_vectors (dict[str, torch.Tensor], optional): ``[n_items, d]`` quantized vectors per
            signal (row 0 = padding); used when ``item_codes`` is None.
        pairs (list[list[str]], optional): Signal pairs to average; None pairs every modality
            with every other one (both directions) plus behaviour with itself.
        item_codes (torch.Tensor, optional): ``[n_items, L]`` semantic-ID levels without the
            dedup code; given, the bias is over codes.
    """

    def __init__(self, n_heads, n_buckets=8, item_vectors=None, pairs=None, item_codes=None):
        super().__init__()
        self.source = "cosine" if item_codes is None else "codes"
        if item_codes is not None:
            self.register_buffer("item_codes", item_codes.long())
            n_buckets = item_codes.shape[1] + 1
        else:
            item_vectors = item_vectors or {}
            pairs = pairs or default_similarity_pairs(
                [s for s in item_vectors if s not in (BEHAVIOUR, "fused")]
            )
            missing = sorted({s for pair in pairs for s in pair} - set(item_vectors))
            if missing:
                raise ConfigError(
                    f"sim_pairs use signals {missing} with no quantized vectors (have {sorted(item_vectors)})"
                )
            self.pairs = [tuple(pair) for pair in pairs]
            for signal in {s for pair in self.pairs for s in pair}:
                self.register_buffer(f"unit_{signal}", F.normalize(item_vectors[signal].float(), dim=-1))
        self.n_buckets = int(n_buckets)
        self.register_buffer("boundaries", torch.linspace(-1.0, 1.0, self.n_buckets + 1)[1:-1])
        self.weight = nn.Embedding(self.n_buckets, n_heads)
        nn.init.zeros_(self.weight.weight)

    @classmethod
    def from_config(cls, config, dataset, n_heads):
        """The bias that a model's ``sim_*`` keys ask for, over the dataset's tokenizer artifact.

        The one place that reads :data:`SIMILARITY_KEYS` and picks vectors or codes; BBQRec and
        BBQSASRec both build their bias here, so the same artifact gives them the same buckets.

        Args:
            config (Config): Model config with the ``sim_*`` keys.
            dataset (Dataset): Its dataset, with the artifact's ``item_quantized`` (per-signal
                vectors) and ``item_signal_codes``/``item_semantic_ids`` attached.
            n_heads (int): Attention heads of the model.

        Returns:
            SimilarityBias | None: None when ``sim_attention`` is off.

        Raises:
            ConfigError: A ``sim_*`` value is invalid, or the artifact lacks what
                ``sim_source`` needs.
        """
        from recbole_bbq.validation import RULES, check_value

        for key in SIMILARITY_KEYS:
            check_value(key, config[key], RULES[key], "the model config")
        if not config["sim_attention"]:
            return None
        if config["sim_source"] == "codes":
            return cls(n_heads, item_codes=_similarity_codes(config, dataset))
        vectors = getattr(dataset, "item_quantized", None) or {}
        if not vectors:
            has_codes = getattr(dataset, "item_semantic_ids", None) is not None
            raise ConfigError(_missing_artifact_message(config, dataset, "quantized item vectors", has_codes))
        return cls(n_heads, config["sim_buckets"], item_vectors=vectors, pairs=config["sim_pairs"])

    def buckets(self, item_seq):
        """``[B, S, S]`` bucket index of every pair of history items ``item_seq`` [B, S]."""
        if self.source == "codes":
            codes = self.item_codes[item_seq]  # [B, S, L]
            equal = codes.unsqueeze(2) == codes.unsqueeze(1)  # [B, S, S, L]
            return equal.long().cumprod(dim=-1).sum(dim=-1)
        similarity = torch.stack(
            [
                getattr(self, f"unit_{a}")[item_seq] @ getattr(self, f"unit_{b}")[item_seq].transpose(1, 2)
                for a, b in self.pairs
            ]
        ).mean(dim=0)
        return torch.bucketize(similarity.clamp(-1.0, 1.0), self.boundaries, right=True)

    def forward(self, item_seq, tokens_per_item=1):
        """Additive attention bias ``[B, H, S*t, S*t]`` for ``t = tokens_per_item``."""
        bias = self.weight(self.buckets(item_seq)).permute(0, 3, 1, 2)  # [B, H, S, S]
        if tokens_per_item > 1:
            bias = bias.repeat_interleave(tokens_per_item, dim=2).repeat_interleave(tokens_per_item, dim=3)
        return bias


def _similarity_codes(config, dataset):
    """``[n_items, L]`` levels for ``sim_source: codes``: the BBQ artifact's fused codes (no
    dedup code), or the codes of a plain semantic-ID file as written."""
    codes = (getattr(dataset, "item_signal_codes", None) or {}).get("fused")
    codes = getattr(dataset, "item_semantic_ids", None) if codes is None else codes
    if codes is None:
        raise ConfigError(_missing_artifact_message(config, dataset, "semantic IDs", False))
    return codes


def _missing_artifact_message(config, dataset, what, plain_semantic_ids):
    """Why the similarity bias cannot be built, and the two ways out."""
    found = (
        f"; the attached file {config['semantic_ids_file']} has semantic IDs but no quantized "
        "vectors (it is not a BBQ tokenizer artifact; use sim_source: codes or a tokenizer artifact)"
        if plain_semantic_ids
        else ""
    )
    model = config["model"]
    return (
        f"{model} with sim_attention: true and sim_source: {config['sim_source']} needs the {what} "
        f"of a BBQ tokenizer artifact attached to dataset '{dataset.dataset_name}'{found}. "
        f"Run the tokenizer stage (run_recbole_bbq.py --model={model} --stage=tokenize) and set "
        "semantic_ids_file to the artifact it writes, or set sim_attention: false."
    )


class Attention(nn.Module):
    """Multi-head attention with T5-style head size (``n_heads * d_kv`` may differ from ``d_model``).

    The attention itself is :func:`torch.nn.functional.scaled_dot_product_attention`; callers pass
    an additive float mask ``[B or 1, H or 1, Q, K]`` (padding as -inf, plus any bias).
    """

    def __init__(self, d_model, n_heads, d_kv, dropout):
        super().__init__()
        self.n_heads, self.d_kv, self.dropout = n_heads, d_kv, dropout
        self.query = nn.Linear(d_model, n_heads * d_kv, bias=False)
        self.key_value = nn.Linear(d_model, 2 * n_heads * d_kv, bias=False)
        self.out = nn.Linear(n_heads * d_kv, d_model, bias=False)

    def _heads(self, x):
        return x.view(x.shape[0], x.shape[1], self.n_heads, self.d_kv).transpose(1, 2)

    def forward(self, x, context, mask=None, is_causal=False, context_repeat=1):
        """Attend from ``x`` to ``context``; ``context_repeat`` > 1 shares each context row with
        that many consecutive rows of ``x`` (beams), projecting it only once."""
        q = self._heads(self.query(x))
        k, v = (self._heads(t) for t in self.key_value(context).chunk(2, dim=-1))
        if context_repeat > 1:
            k, v = k.repeat_interleave(context_repeat, dim=0), v.repeat_interleave(context_repeat, dim=0)
            mask = None if mask is None else mask.repeat_interleave(context_repeat, dim=0)
        if mask is not None and mask.dtype != q.dtype:
            mask = mask.to(q.dtype)  # under bf16/fp16 autocast the projections are low precision
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0, is_causal=is_causal
        )
        return self.out(y.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1))


class FeedForward(nn.Sequential):
    def __init__(self, d_model, d_ff, dropout):
        super().__init__(nn.Linear(d_model, d_ff), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d_ff, d_model))


class EncoderLayer(nn.Module):
    """Pre-norm self-attention + feed-forward block (T5 layout)."""

    def __init__(self, d_model, n_heads, d_kv, d_ff, dropout):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attention = Attention(d_model, n_heads, d_kv, dropout)
        self.feed_forward = FeedForward(d_model, d_ff, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, mask):
        h = self.norm1(x)
        x = x + self.dropout(self.attention(h, h, mask))
        return x + self.dropout(self.feed_forward(self.norm2(x)))


class DecoderLayer(nn.Module):
    """Pre-norm causal self-attention, cross-attention and feed-forward block."""

    def __init__(self, d_model, n_heads, d_kv, d_ff, dropout):
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(3))
        self.self_attention = Attention(d_model, n_heads, d_kv, dropout)
        self.cross_attention = Attention(d_model, n_heads, d_kv, dropout)
        self.feed_forward = FeedForward(d_model, d_ff, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, y, memory, memory_mask, memory_repeat=1):
        h = self.norms[0](y)
        y = y + self.dropout(self.self_attention(h, h, is_causal=True))
        y = y + self.dropout(
            self.cross_attention(self.norms[1](y), memory, memory_mask, context_repeat=memory_repeat)
        )
        return y + self.dropout(self.feed_forward(self.norms[2](y)))


class SemanticIDSeq2Seq(nn.Module):
    """Encoder-decoder over semantic-ID tokens: TIGER's architecture (docs/method.md, "BBQRec
    sequence model").

    Each history item contributes its T code tokens (one embedding table per level, plus a
    padding token), with item-position and level embeddings. The decoder starts from a learned
    BOS vector and predicts the target's T codes, one output head per level.

    Args:
        vocab_sizes (list[int]): Codes per level (T levels).
        max_items (int): Longest history (item positions).
        d_model (int): Model width.
        n_layers (int): Encoder layers.
        n_decoder_layers (int): Decoder layers.
        n_heads (int): Attention heads.
        d_kv (int): Size of each head.
        d_ff (int): Feed-forward width.
        dropout (float): Dropout probability.
    """

    def __init__(
        self,
        vocab_sizes,
        max_items,
        d_model=128,
        n_layers=4,
        n_decoder_layers=4,
        n_heads=6,
        d_kv=64,
        d_ff=1024,
        dropout=0.1,
    ):
        super().__init__()
        self.vocab_sizes, self.levels, self.n_heads = list(vocab_sizes), len(vocab_sizes), n_heads
        self.token_embeddings = nn.ModuleList(nn.Embedding(v + 1, d_model) for v in self.vocab_sizes)
        self.item_position = nn.Embedding(max_items, d_model)
        self.level = nn.Embedding(self.levels, d_model)
        self.bos = nn.Parameter(torch.randn(d_model) * 0.02)
        self.encoder = nn.ModuleList(
            EncoderLayer(d_model, n_heads, d_kv, d_ff, dropout) for _ in range(n_layers)
        )
        self.decoder = nn.ModuleList(
            DecoderLayer(d_model, n_heads, d_kv, d_ff, dropout) for _ in range(n_decoder_layers)
        )
        self.encoder_norm, self.decoder_norm = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.heads = nn.ModuleList(nn.Linear(d_model, v) for v in self.vocab_sizes)
        self.dropout = nn.Dropout(dropout)

    def embed_codes(self, codes):
        """``codes`` [..., T] -> summed-over-nothing token embeddings [..., T, d]."""
        return torch.stack([self.token_embeddings[t](codes[..., t]) for t in range(codes.shape[-1])], dim=-2)

    def encode(self, history_codes, history_mask, attention_bias=None, positions=None):
        """Encode histories.

        Args:
            history_codes (torch.Tensor): ``[B, S, T]`` codes (padding items: any value).
            history_mask (torch.Tensor): ``[B, S]`` True for real items.
            attention_bias (torch.Tensor, optional): ``[B, H, S*T, S*T]`` additive bias.
            positions (torch.Tensor, optional): ``[B, S]`` item-position indices; default
                ``0..S-1`` (column order).

        Returns:
            tuple: memory ``[B, S*T, d]`` and its additive key mask ``[B, 1, 1, S*T]``.
        """
        batch, items, levels = history_codes.shape
        pad = torch.tensor(self.vocab_sizes, device=history_codes.device)
        codes = torch.where(history_mask.unsqueeze(-1), history_codes, pad)
        x = self.embed_codes(codes)  # [B, S, T, d]
        position = self.item_position.weight[:items] if positions is None else self.item_position(positions)
        x = x + position.unsqueeze(-2) + self.level.weight[None, :levels, :]
        x = self.dropout(x.reshape(batch, items * levels, -1))
        token_mask = history_mask.repeat_interleave(levels, dim=1)
        key_mask = torch.zeros(token_mask.shape, dtype=x.dtype, device=x.device)
        key_mask = key_mask.masked_fill(~token_mask, float("-inf"))[:, None, None, :]
        mask = key_mask if attention_bias is None else key_mask + attention_bias
        for layer in self.encoder:
            x = layer(x, mask)
        return self.encoder_norm(x), key_mask

    def decode(self, memory, memory_mask, prefix_codes, beams=1):
        """Logits of the next code after ``prefix_codes`` [N, t] (t < T): ``[N, vocab_sizes[t]]``.

        With ``beams`` > 1, ``memory`` holds one row per user and ``N = users * beams``; each
        user's memory is projected once and shared by its beams.
        """
        n, t = prefix_codes.shape
        y = self.bos.expand(n, 1, -1)
        if t:
            y = torch.cat([y, self.embed_codes(prefix_codes)], dim=1)
        y = self.dropout(y + self.level.weight[: t + 1])
        for layer in self.decoder:
            y = layer(y, memory, memory_mask, memory_repeat=beams)
        return self.heads[t](self.decoder_norm(y[:, -1]))

    def teacher_forcing_logits(self, memory, memory_mask, target_codes):
        """Logits of every target level at once: list of ``[B, vocab_sizes[t]]``."""
        y = torch.cat(
            [self.bos.expand(len(target_codes), 1, -1), self.embed_codes(target_codes[:, :-1])], dim=1
        )
        y = self.dropout(y + self.level.weight[: self.levels])
        for layer in self.decoder:
            y = layer(y, memory, memory_mask)
        y = self.decoder_norm(y)
        return [self.heads[t](y[:, t]) for t in range(self.levels)]
