"""Constrained beam search over the semantic-ID trie: exactness, trie constraints, padding, errors."""

import itertools

import pytest
import torch

from recbole_bbq.errors import ConfigError
from recbole_bbq.model.beam_search import SemanticIDTrie, constrained_beam_search, scores_to_full_ranking

VOCAB = [3, 3, 2]
N_USERS = 5


def random_codes(n_valid=10, vocab=VOCAB, seed=0):
    """``[n_valid + 1, T]`` distinct random code tuples; row 0 (padding) duplicates row 1 on purpose."""
    every = torch.tensor(list(itertools.product(*(range(v) for v in vocab))))
    pick = torch.randperm(len(every), generator=torch.Generator().manual_seed(seed))[:n_valid]
    codes = every[pick]
    return torch.cat([codes[:1], codes])


class PrefixModel:
    """Seeded toy decoder: a recurrent state over the user and the whole prefix, one head per level."""

    def __init__(self, vocab=VOCAB, n_users=N_USERS, dim=8, seed=1):
        gen = torch.Generator().manual_seed(seed)
        self.user = torch.randn(n_users, dim, generator=gen)
        self.code = [torch.randn(v, dim, generator=gen) for v in vocab]
        self.mix = [torch.randn(dim, dim, generator=gen) / dim**0.5 for _ in vocab]
        self.head = [3.0 * torch.randn(dim, v, generator=gen) for v in vocab]

    def log_probs(self, users, prefix_codes, level):
        batch, beams, _ = prefix_codes.shape
        h = self.user[users].unsqueeze(1).expand(batch, beams, -1)
        for j in range(level):
            h = torch.tanh(h @ self.mix[j] + self.code[j][prefix_codes[..., j]])
        return torch.log_softmax(h @ self.head[level], dim=-1)

    def step(self, users):
        return lambda prefix_codes, level: self.log_probs(users, prefix_codes, level)


def valid_prefixes(codes):
    """Every valid prefix tuple (all lengths) of the items in rows 1.."""
    return {tuple(row[:t]) for row in codes[1:].tolist() for t in range(codes.shape[1] + 1)}


def checked_step(step, codes, calls=None):
    """Wrap ``step`` so that it fails on any prefix that no item starts with."""
    allowed = valid_prefixes(codes)

    def wrapped(prefix_codes, level):
        assert prefix_codes.dtype == torch.long and prefix_codes.shape[-1] == level
        for row in prefix_codes.flatten(0, 1).tolist():
            assert tuple(row) in allowed, f"callback got invalid prefix {row}"
        if calls is not None:
            calls.append(tuple(prefix_codes.shape))
        return step(prefix_codes, level)

    return wrapped


def teacher_forced(step, codes, batch_size):
    """``[B, n_valid]`` sum over levels of the model's log-prob of every item's codes."""
    items = codes[1:]
    total = torch.zeros(batch_size, len(items))
    for level in range(codes.shape[1]):
        prefix = items[:, :level].unsqueeze(0).expand(batch_size, -1, -1)
        log_probs = step(prefix, level)
        total += log_probs.gather(-1, items[:, level].view(1, -1, 1).expand(batch_size, -1, 1)).squeeze(-1)
    return total


def reference_beam_search(step, codes, users, beam_size):
    """Plain-Python beam search, one user and one beam at a time."""
    allowed, leaf = valid_prefixes(codes), {tuple(r): i for i, r in enumerate(codes.tolist()) if i > 0}
    results = []
    for user in users:
        beams = [((), 0.0)]
        for level in range(codes.shape[1]):
            candidates = []
            for prefix, score in beams:
                log_probs = step(user)(torch.tensor([[prefix]], dtype=torch.long).view(1, 1, level), level)[
                    0, 0
                ]
                candidates += [
                    (prefix + (c,), score + float(log_probs[c]))
                    for c in range(len(log_probs))
                    if prefix + (c,) in allowed
                ]
            beams = sorted(candidates, key=lambda b: -b[1])[:beam_size]
        results.append([(leaf[p], s) for p, s in beams])
    return results


def assert_no_near_ties(scores, gap=1e-4):
    ordered = scores.sort(dim=-1, descending=True).values
    assert (ordered[:, :-1] - ordered[:, 1:]).min() > gap, "test model produced near-ties; change the seed"


# --------------------------------------------------------------------------------------- trie


def test_trie_tables_handcrafted():
    codes = torch.tensor([[0, 0], [0, 1], [0, 0], [2, 1]])
    trie = SemanticIDTrie(codes, [3, 2])
    assert trie.num_items == 4 and trie.num_valid_items == 3 and trie.num_prefixes == [1, 2, 3]
    assert trie.child_tables[0].tolist() == [[0, -1, 1]]
    assert trie.child_tables[1].tolist() == [[0, 1], [-1, 2]]
    assert trie.leaf_item.tolist() == [2, 1, 3]
    assert trie.valid_mask(0, torch.tensor([0])).tolist() == [[True, False, True]]
    assert trie.valid_mask(1, torch.tensor([[0, 1]])).tolist() == [[[True, True], [False, True]]]
    moved = SemanticIDTrie(codes, [3, 2]).to("meta")
    assert moved.device.type == "meta" and all(t.device.type == "meta" for t in moved.child_tables)
    assert trie.state_dict() == {}  # derived tables stay out of checkpoints


def test_trie_paths_lead_to_their_items():
    codes = random_codes()
    trie = SemanticIDTrie(codes, VOCAB)
    prefix = torch.zeros(len(codes) - 1, dtype=torch.long)
    for level in range(len(VOCAB)):
        prefix = trie.child_tables[level][prefix, codes[1:, level]]
        assert (prefix >= 0).all()
    assert trie.leaf_item[prefix].tolist() == list(range(1, len(codes)))
    assert int((trie.child_tables[-1] >= 0).sum()) == len(codes) - 1


@pytest.mark.parametrize(
    "codes, vocab, message",
    [
        ([[0, 0], [1, 2], [0, 1], [1, 2]], [2, 3], "item rows 1 and 3 have the same semantic ID"),
        ([[0, 0], [1, 2], [0, 3]], [2, 3], "item row 2 has code 3 at level 1"),
        ([[0, 0], [1, 2], [-1, 0]], 3, "item row 2 has code -1 at level 0"),
        ([[0, 0], [1, 2]], [2, 3, 4], "2 levels but 3 vocab sizes"),
        ([0, 1, 2], 3, "matrix"),
        ([[0.0, 1.0], [1.0, 0.0]], 2, "integer codes"),
    ],
)
def test_trie_rejects_bad_input(codes, vocab, message):
    with pytest.raises(ConfigError, match=message):
        SemanticIDTrie(torch.tensor(codes), vocab)


def test_trie_ignores_padding_row():
    codes = torch.tensor([[-5, 99], [1, 2], [0, 1]])
    assert SemanticIDTrie(codes, [2, 3]).num_prefixes == [1, 2, 2]


# ------------------------------------------------------------------------------- beam search


def test_exhaustive_beam_equals_teacher_forced_ranking():
    codes, model, users = random_codes(), PrefixModel(), torch.arange(N_USERS)
    trie = SemanticIDTrie(codes, VOCAB)
    expected = teacher_forced(model.step(users), codes, N_USERS)
    assert_no_near_ties(expected)
    items, scores = constrained_beam_search(
        trie, checked_step(model.step(users), codes), N_USERS, len(codes) - 1
    )
    order = expected.sort(dim=-1, descending=True)
    assert items.dtype == torch.long and scores.dtype == torch.float32
    assert torch.equal(items, order.indices + 1)
    torch.testing.assert_close(scores, order.values, atol=1e-5, rtol=0)


@pytest.mark.parametrize("beam_size", [1, 3, 6])
def test_small_beam_matches_reference_and_is_sorted(beam_size):
    codes, model, users = random_codes(seed=3), PrefixModel(seed=4), torch.arange(N_USERS)
    trie = SemanticIDTrie(codes, VOCAB)
    items, scores = constrained_beam_search(trie, checked_step(model.step(users), codes), N_USERS, beam_size)
    assert items.shape == scores.shape == (N_USERS, beam_size)
    assert (scores[:, :-1] >= scores[:, 1:]).all()
    assert ((items >= 1) & (items < len(codes))).all() and torch.isfinite(scores).all()
    assert all(len(set(row)) == beam_size for row in items.tolist())
    reference = reference_beam_search(
        lambda u: model.step(torch.tensor([u])), codes, users.tolist(), beam_size
    )
    assert items.tolist() == [[i for i, _ in beams] for beams in reference]
    torch.testing.assert_close(
        scores, torch.tensor([[s for _, s in beams] for beams in reference]), atol=1e-5, rtol=0
    )
    full = teacher_forced(model.step(users), codes, N_USERS)
    torch.testing.assert_close(scores, full.gather(1, items - 1), atol=1e-5, rtol=0)


def test_beam_larger_than_items_pads_with_item_zero():
    codes, model, users = random_codes(n_valid=4), PrefixModel(), torch.arange(N_USERS)
    items, scores = constrained_beam_search(SemanticIDTrie(codes, VOCAB), model.step(users), N_USERS, 7)
    assert sorted(items[0, :4].tolist()) == [1, 2, 3, 4] and (items[:, 4:] == 0).all()
    assert torch.isfinite(scores[:, :4]).all() and torch.isneginf(scores[:, 4:]).all()


def test_callback_sees_only_valid_prefixes_and_beam_counts():
    codes, model, users = random_codes(), PrefixModel(), torch.arange(N_USERS)
    trie, calls = SemanticIDTrie(codes, VOCAB), []
    constrained_beam_search(trie, checked_step(model.step(users), codes, calls), N_USERS, 4)
    assert calls == [(N_USERS, min(4, n), level) for level, n in enumerate(trie.num_prefixes[:-1])]


def test_invalid_codes_never_returned_even_when_model_prefers_them():
    codes, model, users = random_codes(), PrefixModel(), torch.arange(N_USERS)
    allowed = valid_prefixes(codes)

    def invalid_codes(prefix_codes, level):
        mask = torch.zeros(*prefix_codes.shape[:2], VOCAB[level], dtype=torch.bool)
        for b, k in itertools.product(*map(range, prefix_codes.shape[:2])):
            prefix = tuple(prefix_codes[b, k].tolist())
            mask[b, k] = torch.tensor([prefix + (c,) not in allowed for c in range(VOCAB[level])])
        return mask

    def adversarial(prefix_codes, level):
        log_probs = model.log_probs(users, prefix_codes, level)
        # most of the mass on codes that lead nowhere
        return torch.log_softmax(log_probs.masked_fill(invalid_codes(prefix_codes, level), 10.0), dim=-1)

    def renormalised(prefix_codes, level):
        log_probs = adversarial(prefix_codes, level).masked_fill(
            invalid_codes(prefix_codes, level), float("-inf")
        )
        return torch.log_softmax(log_probs, dim=-1)

    n_valid, trie = len(codes) - 1, SemanticIDTrie(codes, VOCAB)
    items, scores = constrained_beam_search(trie, checked_step(adversarial, codes), N_USERS, n_valid + 2)
    real = items[:, :n_valid]
    assert all(sorted(row) == list(range(1, n_valid + 1)) for row in real.tolist())
    assert all(tuple(codes[i].tolist()) in allowed for i in real.flatten().tolist())
    assert (items[:, n_valid:] == 0).all() and torch.isneginf(scores[:, n_valid:]).all()
    expected = teacher_forced(adversarial, codes, N_USERS)
    torch.testing.assert_close(scores[:, :n_valid], expected.gather(1, real - 1), atol=1e-5, rtol=0)
    # the search does not renormalise over the valid codes: items under a prefix with invalid
    # siblings keep the model's (tiny) probability
    normalised = teacher_forced(renormalised, codes, N_USERS).gather(1, real - 1)
    assert (scores[:, :n_valid] <= normalised + 1e-5).all() and (scores[:, :n_valid] < normalised - 5).any()


def test_valid_code_with_minus_inf_log_prob_still_beats_invalid_paths():
    codes = torch.tensor([[0, 0], [0, 0], [0, 1], [1, 0]])
    trie = SemanticIDTrie(codes, [3, 2])

    def step(prefix_codes, level):
        logits = torch.tensor([[0.0, 1.0, 5.0], [0.0, 0.5, 0.0]])[level, : trie.vocab_sizes[level]]
        log_probs = torch.log_softmax(logits, dim=0)
        log_probs = log_probs.expand(*prefix_codes.shape[:2], -1).clone()
        if level == 0:
            log_probs[..., 1] = float("-inf")  # valid code 1 (item 3) is impossible for the model
        return log_probs

    items, scores = constrained_beam_search(trie, step, 2, 4)
    assert items.tolist() == [[2, 1, 3, 0]] * 2
    assert torch.isfinite(scores[:, :2]).all() and torch.isneginf(scores[:, 2:]).all()


def test_batch_equals_one_user_at_a_time():
    codes, model, users = random_codes(seed=5), PrefixModel(seed=6), torch.arange(N_USERS)
    trie = SemanticIDTrie(codes, VOCAB)
    items, scores = constrained_beam_search(trie, model.step(users), N_USERS, 4)
    for user in range(N_USERS):
        one_items, one_scores = constrained_beam_search(trie, model.step(torch.tensor([user])), 1, 4)
        assert torch.equal(one_items[0], items[user])
        torch.testing.assert_close(one_scores[0], scores[user], atol=1e-6, rtol=0)


def test_empty_trie_and_bad_callback():
    empty = SemanticIDTrie(torch.zeros(1, 2, dtype=torch.long), 2)
    items, scores = constrained_beam_search(empty, lambda p, level: pytest.fail("called"), 3, 2)
    assert (items == 0).all() and torch.isneginf(scores).all() and items.shape == (3, 2)
    trie = SemanticIDTrie(random_codes(), VOCAB)
    with pytest.raises(ValueError, match="expected"):
        constrained_beam_search(trie, lambda p, level: torch.zeros(2, 1, 5), 2, 3)
    with pytest.raises(ConfigError, match="beam_size"):
        constrained_beam_search(trie, lambda p, level: None, 2, 0)


# ------------------------------------------------------------------------------ full ranking


def test_scores_to_full_ranking():
    items = torch.tensor([[3, 1, 0], [2, 5, 4]])
    scores = torch.tensor([[-0.5, -1.0, float("-inf")], [-0.25, -0.375, -2.0]])
    full = scores_to_full_ranking(items, scores, 7)
    inf = float("-inf")
    assert full.shape == (2, 7) and full.dtype == torch.float32
    assert full.tolist() == [[inf, -1.0, inf, -0.5, inf, inf, inf], [inf, inf, -0.25, inf, -2.0, -0.375, inf]]
    assert full.topk(2, dim=1).indices.tolist() == [[3, 1], [2, 5]]
