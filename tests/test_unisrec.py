"""UniSRec: full-ranking run on a Scientific slice, frozen text vectors, MoE adaptor, item_repr."""

import pytest
import torch

from recbole_bbq.config import Config
from recbole_bbq.errors import ConfigError
from recbole_bbq.model.sequential_recommender.unisrec import MoEAdaptorLayer, UniSRec
from recbole_bbq.quick_start import run_recbole_bbq
from recbole_bbq.utils import create_dataset, data_preparation

from conftest import tiny_config

SMALL = dict(hidden_size=32, inner_size=64, n_layers=1, MAX_ITEM_LIST_LENGTH=20)


def unisrec_config(tmp_path, data_path, **overrides):
    settings = dict(data_path=str(data_path), **SMALL)
    settings.update(overrides)
    return tiny_config(tmp_path, **settings)


@pytest.fixture(scope="module")
def scientific(scientific_slice, tmp_path_factory):
    """The Scientific slice loaded once: ``(data_path, config, train dataloader)``."""
    with pytest.MonkeyPatch.context() as patch:  # module fixtures run before conftest's isolation
        work = tmp_path_factory.mktemp("unisrec")
        patch.setattr("sys.argv", ["pytest"])
        patch.chdir(work)
        config = Config("UniSRec", "Scientific", config_dict=unisrec_config(work, scientific_slice))
        train, _, _ = data_preparation(config, create_dataset(config))
    return scientific_slice, config, train


def build(config, train, **overrides):
    """A fresh UniSRec on the loaded dataset, with config keys overridden in place."""
    saved = {key: config[key] for key in overrides}
    for key, value in overrides.items():
        config[key] = value
    try:
        torch.manual_seed(0)
        return UniSRec(config, train._dataset)
    finally:
        for key, value in saved.items():
            config[key] = value


def test_trains_and_evaluates_with_full_ranking(tmp_path, scientific_slice):
    result = run_recbole_bbq(
        "UniSRec", "Scientific", config_dict=unisrec_config(tmp_path, scientific_slice, seq_item_weight=0.1)
    )
    test_result = result["test_result"]
    expected = {f"{metric}@{k}" for metric in ("recall", "ndcg") for k in (5, 10, 20)}
    assert expected <= set(test_result)
    assert all(0.0 <= value <= 1.0 for value in test_result.values()), test_result


def test_text_vectors_are_a_frozen_buffer_and_the_adaptor_learns(scientific):
    _, config, train = scientific
    model = build(config, train)
    assert "text_embedding" in dict(model.named_buffers())
    assert "text_embedding" in model.state_dict()  # saved with checkpoints
    assert all(param is not model.text_embedding for param in model.parameters())
    assert torch.equal(model.text_embedding, train._dataset.item_features["text"])

    text_before = model.text_embedding.clone()
    adaptor_before = {name: p.detach().clone() for name, p in model.moe_adaptor.named_parameters()}
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    loss = model.calculate_loss(next(iter(train)))
    assert loss.dim() == 0 and torch.isfinite(loss)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

    assert torch.equal(model.text_embedding, text_before)
    changed = [n for n, p in model.moe_adaptor.named_parameters() if not torch.equal(p, adaptor_before[n])]
    assert any(n.startswith("experts.") for n in changed) and "gate.weight" in changed


def test_missing_text_modality_is_a_clear_config_error(tmp_path, scientific_slice):
    with pytest.raises(ConfigError, match=r"UniSRec needs item text vectors: add 'text' to 'modalities'"):
        run_recbole_bbq(
            "UniSRec", "Scientific", config_dict=unisrec_config(tmp_path, scientific_slice, modalities=[])
        )
    with pytest.raises(ConfigError, match=r"add 'audio' to 'modalities'"):
        run_recbole_bbq(
            "UniSRec",
            "Scientific",
            config_dict=unisrec_config(tmp_path, scientific_slice, text_modality="audio"),
        )


def test_moe_adaptor_shapes_and_gates():
    adaptor = MoEAdaptorLayer(n_exps=4, input_size=12, output_size=8, dropout=0.2).train()
    x = torch.randn(3, 5, 12)
    assert adaptor(x).shape == (3, 5, 8)
    assert adaptor(x[0]).shape == (5, 8)
    gates = adaptor.gates(x)
    assert gates.shape == (3, 5, 4) and torch.allclose(gates.sum(-1), torch.ones(3, 5))
    adaptor.eval()  # zero-initialised gate, no noise: uniform mixture, deterministic
    assert torch.allclose(adaptor.gates(x), torch.full((3, 5, 4), 0.25))
    assert torch.equal(adaptor(x), adaptor(x))


def test_item_repr_text_drops_the_id_embedding(scientific):
    _, config, train = scientific
    both = build(config, train, item_repr="id+text")
    text_only = build(config, train, item_repr="text")
    assert text_only.item_embedding is None
    both_names, text_names = set(dict(both.named_parameters())), set(dict(text_only.named_parameters()))
    assert both_names - text_names == {"item_embedding.weight"} and text_names < both_names

    n_items, hidden = both.n_items, both.hidden_size
    assert text_only.text_embedding.shape == (n_items, 512)
    for model in (both, text_only):
        model.eval()
        assert model.item_representation().shape == (n_items, hidden)
        batch = next(iter(train))
        scores = model.full_sort_predict(batch)
        assert scores.shape == (len(batch), n_items)
        point = model.predict(batch)
        rows = torch.arange(len(batch))
        assert torch.allclose(point, scores[rows, batch[model.ITEM_ID]], atol=1e-5)

    with pytest.raises(ConfigError, match="item_repr"):
        build(config, train, item_repr="id")


def test_item_drop_augmentation_keeps_order_and_length(scientific):
    _, config, train = scientific
    model = build(config, train, item_drop_coefficient=1.0, item_drop_ratio=0.5)
    item_seq = torch.tensor([[5, 6, 7, 8, 0, 0], [9, 0, 0, 0, 0, 0]])
    torch.manual_seed(3)
    seq_aug, len_aug, emb_aug = model.augment(item_seq, torch.tensor([4, 1]))
    assert emb_aug.shape == (2, 6, model.hidden_size)
    assert seq_aug[1].tolist() == [9, 0, 0, 0, 0, 0] and len_aug[1] == 1
    kept = seq_aug[0, : len_aug[0]].tolist()
    assert kept[0] == 5 and kept == sorted(kept) and set(kept) <= {5, 6, 7, 8}
    assert (seq_aug[0, len_aug[0] :] == 0).all()


def test_text_dropout_augmentation_keeps_the_ids(scientific):
    _, config, train = scientific
    model = build(config, train, item_drop_coefficient=0.0, item_drop_ratio=0.5).eval()
    item_seq, item_seq_len = torch.tensor([[*range(5, 17), 0, 0]]), torch.tensor([12])
    torch.manual_seed(3)
    seq_aug, len_aug, emb_aug = model.augment(item_seq, item_seq_len)
    assert torch.equal(seq_aug, item_seq) and torch.equal(len_aug, item_seq_len)
    plain = model.item_representation()[item_seq]
    changed = ~torch.isclose(emb_aug, plain).all(dim=-1)[0]
    assert changed.any() and not changed.all() and not changed[12:].any()  # some items, never padding
