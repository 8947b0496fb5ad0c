"""BBQRec's ``score_mode: interpolate``: beam log-probability plus weighted dense log-probability."""

import torch

from recbole_bbq.model.sequential_recommender.bbqrec import interpolated_scores

from test_generative import run_model, tiny_root  # noqa: F401  (fixture)

NEG_INF = float("-inf")


def beam_and_dense():
    """Two users, 7 items (0 = padding); items 1..3 of user 0 and 4..6 of user 1 are in the beam."""
    beam = torch.full((2, 7), NEG_INF)
    beam[0, [1, 2, 3]] = torch.tensor([-0.5, -1.0, -2.0])
    beam[1, [4, 5, 6]] = torch.tensor([-0.2, -3.0, -4.0])
    dense = torch.randn(2, 7, generator=torch.Generator().manual_seed(0))
    dense[:, 0] = NEG_INF
    return beam, dense


def ranking(scores):
    return torch.argsort(scores, dim=1, descending=True, stable=True)


def test_small_weight_keeps_the_beam_order_then_ranks_the_rest_by_dense():
    beam, dense = beam_and_dense()
    order = ranking(interpolated_scores(beam, dense, 1e-3))
    # The beam's last item shares its log-probability with every item outside the beam.
    assert order[0, :2].tolist() == [1, 2] and order[1, :2].tolist() == [4, 5]
    for user in range(2):
        rest = [int(i) for i in order[user, 2:] if i != 0]
        assert rest == sorted(rest, key=lambda i: -float(dense[user, i]))


def test_large_weight_ranks_by_the_dense_head():
    beam, dense = beam_and_dense()
    assert torch.equal(ranking(interpolated_scores(beam, dense, 1e6))[:, :-1], ranking(dense)[:, :-1])


def test_every_real_item_is_scored_and_padding_is_last():
    beam, dense = beam_and_dense()
    for weight in (0.0, 0.5, 3.0):
        scores = interpolated_scores(beam, dense, weight)
        assert torch.isfinite(scores[:, 1:]).all() and (scores[:, 0] == NEG_INF).all()


def test_bbqrec_trains_and_ranks_with_interpolation(tmp_path, tiny_root):  # noqa: F811
    result, _ = run_model("BBQRec", tmp_path, tiny_root, score_mode="interpolate", fusion_weight=0.5)
    assert all(0.0 <= value <= 1.0 for value in result["test_result"].values())


def test_dense_item_vectors_are_reused_until_a_weight_changes(tmp_path, tiny_root):  # noqa: F811
    """Outside training, full-sort reuses the item vectors; a step or a reload refreshes them."""
    from test_generative import bbqrec

    _, model, _ = bbqrec(tmp_path, tiny_root)
    with torch.no_grad():
        first = model.item_representations()
        assert model.item_representations() is first  # reused
        assert torch.equal(first, model._item_representations(None))
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    loss = model.item_representations().sum()  # training: computed afresh, with gradients
    assert loss.requires_grad
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    (-loss).backward()
    optimizer.step()
    model.eval()
    with torch.no_grad():
        stepped = model.item_representations()
        assert not torch.equal(stepped, first)
        assert torch.equal(stepped, model._item_representations(None))
        model.load_state_dict(saved)
        assert torch.equal(model.item_representations(), first)
