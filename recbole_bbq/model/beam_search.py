"""Constrained beam search over a trie of valid semantic IDs (TIGER-style generative retrieval).

An item is generated as its ``T`` semantic-ID codes, one level at a time. The search keeps, for
every user, the ``beam_size`` best partial code paths and only ever extends a path with a code
that leads to an existing item, so every returned item is real and invalid paths are never
expanded. Everything is batched over users and beams; the only Python loop is over the levels.

The valid paths are stored as dense per-level tables (:class:`SemanticIDTrie`):

* level ``t`` has ``n_prefixes_t`` distinct code prefixes of length ``t`` (level 0: the single
  empty prefix, id 0);
* ``child_tables[t][p, c]`` is the id at level ``t + 1`` of prefix ``p`` extended by code ``c``,
  or -1 when no item starts with that path;
* ``leaf_item[p]`` is the item id of full path ``p`` (level ``T``).
"""

import torch
from torch import nn

from recbole_bbq.errors import ConfigError

NEG_INF = float("-inf")


def _as_code_matrix(item_codes):
    """``item_codes`` as an int64 ``[n_items, T]`` tensor, or a ConfigError."""
    codes = torch.as_tensor(item_codes)
    if codes.dim() != 2 or codes.shape[0] < 1 or codes.shape[1] < 1:
        raise ConfigError(
            f"semantic IDs must be a [n_items, T] matrix with a padding row 0 and T >= 1, "
            f"got shape {tuple(codes.shape)}"
        )
    if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
        raise ConfigError(f"semantic IDs must be integer codes, got dtype {codes.dtype}")
    return codes.long()


def _as_vocab_sizes(vocab_sizes, levels):
    """``vocab_sizes`` (an int or one int per level) as a list of ``levels`` positive ints."""
    if isinstance(vocab_sizes, int) or (torch.is_tensor(vocab_sizes) and vocab_sizes.dim() == 0):
        vocab_sizes = [int(vocab_sizes)] * levels
    vocab_sizes = [int(v) for v in vocab_sizes]
    if len(vocab_sizes) != levels:
        raise ConfigError(
            f"semantic IDs have {levels} levels but {len(vocab_sizes)} vocab sizes were given: {vocab_sizes}"
        )
    if any(v < 1 for v in vocab_sizes):
        raise ConfigError(f"every vocab size must be >= 1, got {vocab_sizes}")
    return vocab_sizes


def _check_code_range(codes, vocab_sizes):
    """Raise a ConfigError naming the first item row (row 0 excluded) with an out-of-range code."""
    limits = torch.tensor(vocab_sizes, device=codes.device)
    bad = (codes[1:] < 0) | (codes[1:] >= limits)
    if bad.any():
        row, level = (int(i) for i in bad.nonzero()[0])
        row += 1
        raise ConfigError(
            f"semantic ID of item row {row} has code {int(codes[row, level])} at level {level}, "
            f"outside [0, {vocab_sizes[level]}): {codes[row].tolist()}"
        )


def _check_unique_leaves(leaf_ids, codes):
    """Raise a ConfigError naming two item rows that share a code tuple (leaf id)."""
    order = torch.argsort(leaf_ids, stable=True)
    same = leaf_ids[order][1:] == leaf_ids[order][:-1]
    if same.any():
        first = int(same.nonzero()[0])
        row_a, row_b = int(order[first]) + 1, int(order[first + 1]) + 1
        raise ConfigError(
            f"item rows {row_a} and {row_b} have the same semantic ID {codes[row_a].tolist()}; "
            f"semantic IDs must be unique for constrained beam search"
        )


class SemanticIDTrie(nn.Module):
    """Dense per-level trie of the valid semantic-ID paths.

    It is an :class:`torch.nn.Module` whose tables are non-persistent buffers, so ``.to(device)``
    (or moving the model that owns it) moves it and checkpoints are unaffected.

    Args:
        item_codes (torch.Tensor): ``[n_items, T]`` integer codes; row 0 (padding) is ignored,
            rows ``1..n_items-1`` must be distinct.
        vocab_sizes (int | list[int]): Codes per level (one int for every level, or one per level).

    Attributes:
        num_levels (int): ``T``.
        vocab_sizes (list[int]): Codes per level.
        num_items (int): Rows of ``item_codes`` including padding (RecBole's ``n_items``).
        num_valid_items (int): Real items, ``num_items - 1``.
        num_prefixes (list[int]): Distinct prefixes per level ``0..T`` (``num_prefixes[0] == 1``,
            ``num_prefixes[T] == num_valid_items``).
        leaf_item (torch.Tensor): ``[num_valid_items]`` item id of every full path.

    Raises:
        ConfigError: On a malformed matrix, bad vocab sizes, a negative code, a code >= its
            level's vocab size, or two items with the same code tuple (the rows are named).
    """

    def __init__(self, item_codes, vocab_sizes):
        super().__init__()
        codes = _as_code_matrix(item_codes)
        self.num_levels = codes.shape[1]
        self.vocab_sizes = _as_vocab_sizes(vocab_sizes, self.num_levels)
        self.num_items = codes.shape[0]
        self.num_valid_items = self.num_items - 1
        _check_code_range(codes, self.vocab_sizes)
        self.num_prefixes = [1]
        prefix = torch.zeros(self.num_valid_items, dtype=torch.long, device=codes.device)
        for level in range(self.num_levels):
            table, prefix = self._build_level(prefix, codes[1:, level], level)
            self.register_buffer(f"children_{level}", table, persistent=False)
        _check_unique_leaves(prefix, codes)
        leaf_item = torch.empty(self.num_prefixes[-1], dtype=torch.long, device=codes.device)
        leaf_item[prefix] = torch.arange(1, self.num_items, device=codes.device)
        self.register_buffer("leaf_item", leaf_item, persistent=False)

    def _build_level(self, prefix, level_codes, level):
        """Children table of ``level`` and every item's prefix id at ``level + 1``."""
        vocab = self.vocab_sizes[level]
        keys = prefix * vocab + level_codes
        unique_keys, next_prefix = torch.unique(keys, sorted=True, return_inverse=True)
        table = torch.full((self.num_prefixes[level], vocab), -1, dtype=torch.long, device=prefix.device)
        table.view(-1)[unique_keys] = torch.arange(len(unique_keys), device=prefix.device)
        self.num_prefixes.append(len(unique_keys))
        return table, next_prefix

    @property
    def child_tables(self):
        """list[torch.Tensor]: ``child_tables[t]`` is ``[num_prefixes[t], vocab_sizes[t]]``: the
        prefix id at level ``t + 1`` of (prefix at level ``t``, next code), -1 when invalid.

        (Not ``children``: that name is :meth:`torch.nn.Module.children`.)
        """
        return [getattr(self, f"children_{level}") for level in range(self.num_levels)]

    @property
    def device(self):
        """torch.device: Where the tables live."""
        return self.leaf_item.device

    def valid_mask(self, level, prefix_ids):
        """Which next codes extend each prefix to a valid path.

        Args:
            level (int): Level of the prefixes (their length), ``0 <= level < T``.
            prefix_ids (torch.Tensor): Prefix ids at ``level``, any shape ``[...]``.

        Returns:
            torch.Tensor: bool ``[..., vocab_sizes[level]]``.
        """
        return self.child_tables[level][prefix_ids] >= 0

    def next_prefix(self, level, prefix_ids, codes):
        """Prefix ids at ``level + 1`` of ``prefix_ids`` extended by ``codes`` (-1 when invalid).

        Args:
            level (int): Level of ``prefix_ids``.
            prefix_ids (torch.Tensor): Prefix ids at ``level``, any shape.
            codes (torch.Tensor): Next codes, same shape.

        Returns:
            torch.Tensor: LongTensor of the same shape.
        """
        return self.child_tables[level][prefix_ids, codes]

    def extra_repr(self):
        return f"levels={self.num_levels}, vocab_sizes={self.vocab_sizes}, items={self.num_valid_items}"


def _check_step_output(log_probs, batch_size, beams, vocab, level):
    """Raise a ValueError when the callback returned the wrong shape."""
    expected = (batch_size, beams, vocab)
    if tuple(log_probs.shape) != expected:
        raise ValueError(
            f"step_log_probs at level {level} returned shape {tuple(log_probs.shape)}, expected {expected}"
        )


def _selection_key(candidate_scores, valid):
    """Scores to rank candidates by: every valid candidate (even one the model scores -inf) above
    every invalid one, so that a valid path is never displaced by an invalid one."""
    lowest = torch.finfo(candidate_scores.dtype).min
    return torch.where(valid, candidate_scores.clamp(min=lowest), NEG_INF)


def _expand_level(trie, level, prefix_codes, prefix_ids, beam_scores, log_probs, keep):
    """One search step: extend every live beam by every code and keep the best ``keep`` valid ones.

    Args:
        trie (SemanticIDTrie): Valid paths.
        level (int): Current prefix length.
        prefix_codes (torch.Tensor): ``[B, k, level]`` codes of the live beams.
        prefix_ids (torch.Tensor): ``[B, k]`` their prefix ids at ``level``.
        beam_scores (torch.Tensor): ``[B, k]`` their summed log-probs.
        log_probs (torch.Tensor): ``[B, k, V]`` the model's log-probs of the next code.
        keep (int): Beams to keep (never more than the valid candidates).

    Returns:
        tuple: next ``prefix_codes`` ``[B, keep, level + 1]``, ``prefix_ids`` and ``beam_scores``
        ``[B, keep]``.
    """
    batch, beams, vocab = log_probs.shape
    valid = trie.valid_mask(level, prefix_ids)  # [B, k, V]
    masked = log_probs.masked_fill(~valid, NEG_INF)  # mask BEFORE adding; no renormalisation
    candidates = (beam_scores.unsqueeze(-1) + masked).reshape(batch, beams * vocab)
    key = _selection_key(candidates, valid.reshape(batch, beams * vocab))
    flat = torch.topk(key, keep, dim=-1, sorted=True).indices  # [B, keep]
    parent, code = flat // vocab, flat % vocab
    parent_codes = torch.gather(prefix_codes, 1, parent.unsqueeze(-1).expand(-1, -1, level))
    next_codes = torch.cat([parent_codes, code.unsqueeze(-1)], dim=-1)
    next_ids = trie.next_prefix(level, torch.gather(prefix_ids, 1, parent), code)
    return next_codes, next_ids, torch.gather(candidates, 1, flat)


def _pad_beams(items, scores, beam_size):
    """Pad ``[B, k]`` results to ``[B, beam_size]`` with item 0 and score -inf."""
    missing = beam_size - items.shape[1]
    if missing <= 0:
        return items, scores
    batch = items.shape[0]
    items = torch.cat([items, items.new_zeros(batch, missing)], dim=1)
    scores = torch.cat([scores, scores.new_full((batch, missing), NEG_INF)], dim=1)
    return items, scores


def constrained_beam_search(trie, step_log_probs, batch_size, beam_size):
    """Batched beam search that only follows valid semantic-ID paths.

    At level ``t`` every live beam is extended by every code; codes that leave the trie get
    log-prob -inf before they are added to the beam score (the model's distribution is not
    renormalised, so a returned score is exactly the sum of the model's log-probs along the
    item's codes: its teacher-forced log-likelihood). The best ``beam_size`` valid
    (beam, code) candidates of each user are kept (one ``torch.topk`` over ``[B, k * V]``).
    Because the trie is shared by all users, level ``t`` always has
    ``k = min(beam_size, num_prefixes[t])`` live beams per user, all of them valid prefixes:
    ``step_log_probs`` is never called with a prefix that no item starts with.

    Args:
        trie (SemanticIDTrie): Valid paths, on the device the callback works on.
        step_log_probs (Callable[[torch.Tensor, int], torch.Tensor]): ``(prefix_codes, level)``
            -> log-probs. ``prefix_codes`` is LongTensor ``[B, k, level]`` (the codes chosen so
            far by each of the ``k`` beams of each user; ``k == 1`` at level 0) and the result is
            ``[B, k, vocab_sizes[level]]``, the model's full next-code distribution.
        batch_size (int): ``B``, users searched together.
        beam_size (int): Items returned per user.

    Returns:
        tuple: ``items`` LongTensor ``[B, beam_size]`` and ``scores`` FloatTensor
        ``[B, beam_size]``, best first. When the trie holds fewer than ``beam_size`` items the
        remaining slots are item 0 with score -inf.

    Raises:
        ConfigError: When ``beam_size < 1``.
        ValueError: When ``step_log_probs`` returns the wrong shape.
    """
    if int(beam_size) < 1:
        raise ConfigError(f"beam_size must be >= 1, got {beam_size}")
    beam_size, device = int(beam_size), trie.device
    prefix_codes = torch.zeros(batch_size, 1, 0, dtype=torch.long, device=device)
    prefix_ids = torch.zeros(batch_size, 1, dtype=torch.long, device=device)
    beam_scores = torch.zeros(batch_size, 1, device=device)
    if trie.num_valid_items == 0:
        return _pad_beams(prefix_ids[:, :0], beam_scores[:, :0], beam_size)
    for level in range(trie.num_levels):
        log_probs = step_log_probs(prefix_codes, level)
        _check_step_output(log_probs, batch_size, prefix_codes.shape[1], trie.vocab_sizes[level], level)
        dtype = torch.promote_types(log_probs.dtype, torch.float32)
        keep = min(beam_size, trie.num_prefixes[level + 1])
        prefix_codes, prefix_ids, beam_scores = _expand_level(
            trie, level, prefix_codes, prefix_ids, beam_scores.to(dtype), log_probs.to(device, dtype), keep
        )
    return _pad_beams(trie.leaf_item[prefix_ids], beam_scores, beam_size)


def scores_to_full_ranking(items, scores, n_items):
    """Scatter beam results into a full ``[B, n_items]`` score matrix (RecBole ``full_sort_predict``).

    Args:
        items (torch.Tensor): ``[B, beam]`` item ids (0 = padding slot).
        scores (torch.Tensor): ``[B, beam]`` their scores.
        n_items (int): Items including padding (RecBole's ``n_items``).

    Returns:
        torch.Tensor: float ``[B, n_items]``, the beam scores at the returned items and -inf
        everywhere else, column 0 (padding) included.
    """
    dtype = torch.promote_types(scores.dtype, torch.float32)
    full = torch.full((items.shape[0], n_items), NEG_INF, dtype=dtype, device=scores.device)
    real = items > 0
    full.scatter_(1, items.long(), torch.where(real, scores.to(dtype), NEG_INF))
    full[:, 0] = NEG_INF
    return full
