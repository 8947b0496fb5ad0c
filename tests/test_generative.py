"""TIGER and BBQRec: training, full-ranking evaluation, beam search, similarity bias, score modes."""

import numpy as np
import pytest
import torch

from recbole_bbq.config import Config
from recbole_bbq.data.semantic_ids import read_semantic_id_file, semantic_id_path, write_semantic_id_file
from recbole_bbq.errors import ConfigError, DataError
from recbole_bbq.model.layers import SimilarityBias
from recbole_bbq.pipeline import prepare_semantic_ids
from recbole_bbq.quick_start import run_recbole_bbq
from recbole_bbq.utils import create_dataset, data_preparation, get_model

from conftest import SMALL_BACKBONE, TINY_CODES, TINY_ITEMS, copy_tiny_with_features, tiny_config

TINY_TOKENIZER = {"epochs": 2, "codebook_size": 8, "latent_dim": 8, "hidden_dim": 16}
ITEMS = TINY_ITEMS


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    """tiny plus 16-d text and 12-d image vectors and two published-style code files."""
    root = tmp_path_factory.mktemp("data")
    copy_tiny_with_features(root)
    published2 = semantic_id_path(root / "tiny", "tiny", "published2")
    write_semantic_id_file(published2, ITEMS, TINY_CODES[:, ::-1] % 2)
    return root


def model_config(tmp_path, root, **overrides):
    settings = dict(
        data_path=str(root),
        modalities=["text"],
        behaviour={"epochs": 1},
        tokenizer=TINY_TOKENIZER,
        rqvae={"epochs": 2, "codebook_size": 8, "latent_dim": 8, "hidden_dim": 16},
        beam_size=20,
        **SMALL_BACKBONE,
    )
    settings.update(overrides)
    return tiny_config(tmp_path, **settings)


def run_model(model, tmp_path, root, **overrides):
    config_dict = model_config(tmp_path, root, **overrides)
    config_dict.update(prepare_semantic_ids(model, "tiny", config_dict=config_dict, show_progress=False))
    return run_recbole_bbq(model, "tiny", config_dict=config_dict), config_dict


def build(model, config_dict):
    """Config, model and test dataloader for direct checks."""
    config = Config(model, "tiny", config_dict=config_dict)
    dataset = create_dataset(config)
    train, _, test = data_preparation(config, dataset)
    torch.manual_seed(0)
    return config, get_model(model)(config, train._dataset).eval(), test


def assert_metrics(result):
    for value in result["test_result"].values():
        assert 0.0 <= value <= 1.0


@pytest.mark.parametrize(
    "model, overrides",
    [
        ("TIGER", {}),  # RQ-VAE over the text vectors
        ("TIGER", {"semantic_ids_from": "published"}),
        ("BBQRec", {"score_mode": "beam"}),
        ("BBQRec", {"score_mode": "dense", "sim_source": "codes"}),
        ("BBQRec", {"score_mode": "fused", "s2i_negatives": "batch"}),
        ("MMTIGER", {"modalities": ["text", "image"]}),  # one RQ-VAE per modality
        ("MMTIGER", {"semantic_ids_from": ["published", "published2"]}),
    ],
)
def test_trains_and_evaluates_with_full_ranking(tmp_path, tiny_root, model, overrides):
    result, _ = run_model(model, tmp_path, tiny_root, **overrides)
    assert_metrics(result)


def test_mmtiger_concatenates_independent_per_modality_codes(tmp_path, tiny_root):
    def codes(model, **overrides):
        """The model's semantic IDs in ITEMS order."""
        config_dict = model_config(tmp_path, tiny_root, **overrides)
        path = prepare_semantic_ids(model, "tiny", config_dict=config_dict, show_progress=False)[
            "semantic_ids_file"
        ]
        tokens, item_codes, _ = read_semantic_id_file(path)
        return item_codes[np.argsort(tokens)][np.argsort(np.argsort(ITEMS))]

    text = codes("TIGER", rqvae={**model_config(tmp_path, tiny_root)["rqvae"], "modality": "text"})
    image = codes("TIGER", rqvae={**model_config(tmp_path, tiny_root)["rqvae"], "modality": "image"})
    both = codes("MMTIGER", modalities=["text", "image"])
    assert both.shape == (30, 2 * 3 + 1)  # text levels, image levels, dedup code
    np.testing.assert_array_equal(both[:, :3], text[:, :3])
    np.testing.assert_array_equal(both[:, 3:6], image[:, :3])
    published = codes("MMTIGER", semantic_ids_from=["published", "published2"])
    raw = read_semantic_id_file(semantic_id_path(tiny_root / "tiny", "tiny", "published"))[1]
    np.testing.assert_array_equal(published[:, :6], np.concatenate([raw, raw[:, ::-1] % 2], axis=1))
    with pytest.raises(ConfigError, match="TIGER takes one semantic_ids_from file"):
        codes("TIGER", semantic_ids_from=["published", "published2"])


@pytest.mark.parametrize("model", ["TIGER", "MMTIGER", "BBQRec"])
def test_generative_models_train_on_the_real_next_items_only(tmp_path, tiny_root, model):
    """RecBole's point-wise negative sampling would turn random items into training targets."""
    config_dict = model_config(
        tmp_path, tiny_root, semantic_ids_from="published" if model == "TIGER" else None
    )
    config_dict.update(prepare_semantic_ids(model, "tiny", config_dict=config_dict, show_progress=False))
    config = Config(model, "tiny", config_dict=config_dict)
    assert config["train_neg_sample_args"]["distribution"] == "none"
    train, _, _ = data_preparation(config, create_dataset(config))
    batch = next(iter(train))
    assert len(batch) <= config["train_batch_size"] and config["LABEL_FIELD"] not in batch
    with pytest.raises(ConfigError, match="trains on the real next item only"):
        build(model, {**config_dict, "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1}})


def test_beam_search_with_all_items_equals_teacher_forcing(tmp_path, tiny_root):
    config_dict = model_config(tmp_path, tiny_root, semantic_ids_from="published", beam_size=30)
    config_dict.update(prepare_semantic_ids("TIGER", "tiny", config_dict=config_dict, show_progress=False))
    config, model, test = build("TIGER", config_dict)
    interaction = next(iter(test))[0]
    with torch.no_grad():
        ranking = model.full_sort_predict(interaction)
        memory, mask, _ = model.encode(interaction)
        users = len(ranking)
        items = torch.arange(1, model.n_items).repeat(users)
        exact = model.item_log_likelihood(
            memory.repeat_interleave(model.n_items - 1, 0),
            mask.repeat_interleave(model.n_items - 1, 0),
            items,
        ).view(users, -1)
    torch.testing.assert_close(ranking[:, 1:], exact, rtol=1e-5, atol=1e-5)
    assert torch.equal(ranking[:, 1:].argsort(dim=1, descending=True), exact.argsort(dim=1, descending=True))
    assert torch.isinf(ranking[:, 0]).all()


def test_beam_returns_only_existing_items(tmp_path, tiny_root):
    config_dict = model_config(tmp_path, tiny_root, semantic_ids_from="published")
    config_dict.update(prepare_semantic_ids("TIGER", "tiny", config_dict=config_dict, show_progress=False))
    _, model, test = build("TIGER", config_dict)
    with torch.no_grad():
        memory, mask, _ = model.encode(next(iter(test))[0])
        items, scores = model.beam_search(memory, mask)
    assert ((items >= 1) & (items < model.n_items)).all() and torch.isfinite(scores).all()
    valid = {tuple(c) for c in model.item_codes[1:].tolist()}
    assert all(tuple(model.item_codes[i].tolist()) in valid for i in items.flatten().tolist())


def bbqrec(tmp_path, tiny_root, **overrides):
    config_dict = model_config(tmp_path, tiny_root, **overrides)
    config_dict.update(prepare_semantic_ids("BBQRec", "tiny", config_dict=config_dict, show_progress=False))
    return build("BBQRec", config_dict)


def test_similarity_bias_is_inert_when_off_or_zero(tmp_path, tiny_root):
    # codes-based buckets: dedup codes make every pair's prefix count informative on tiny data
    _, with_bias, test = bbqrec(tmp_path, tiny_root, sim_source="codes")
    _, without_bias, _ = bbqrec(tmp_path, tiny_root, sim_attention=False)
    without_bias.load_state_dict(with_bias.state_dict(), strict=False)
    interaction = next(iter(test))[0]
    with torch.no_grad():
        plain = without_bias.encode(interaction)[0]
        history = with_bias.recent_history(interaction)
        backbone = with_bias.backbone.encode(
            with_bias.item_codes[history], history > 0, positions=with_bias.item_position_ids(history)
        )[0]
        torch.testing.assert_close(plain, backbone, rtol=0, atol=0)  # sim_attention: false == backbone
        torch.testing.assert_close(with_bias.encode(interaction)[0], plain, rtol=0, atol=1e-6)  # zero weights
        with_bias.similarity_bias.weight.weight.normal_()
        assert not torch.allclose(with_bias.encode(interaction)[0], plain, atol=1e-4)


def test_similarity_bias_shape_and_top_bucket_for_identical_items():
    vectors = {s: torch.randn(5, 4) for s in ("behaviour", "text", "image")}
    shared = torch.randn(4)
    for signal in vectors:
        vectors[signal][1] = vectors[signal][2] = shared  # items 1 and 2: identical quantized vectors
    bias = SimilarityBias(n_heads=3, n_buckets=8, item_vectors=vectors)
    history = torch.tensor([[1, 2, 3, 0]])
    assert bias(history, tokens_per_item=4).shape == (1, 3, 16, 16)
    assert bias.buckets(history)[0, 0, 1] == 7 and bias.buckets(history)[0, 1, 0] == 7


def test_fused_mode_keeps_beam_top_k_and_ranks_everything(tmp_path, tiny_root):
    _, model, test = bbqrec(tmp_path, tiny_root)
    interaction = next(iter(test))[0]
    with torch.no_grad():
        model.score_mode = "beam"
        beam = model.full_sort_predict(interaction)
        model.score_mode = "fused"
        fused = model.full_sort_predict(interaction)
    for k in (5, 10, 20):
        assert torch.equal(beam.topk(k).indices, fused.topk(k).indices)
    assert torch.isinf(fused[:, 0]).all() and torch.isfinite(fused[:, 1:]).all()


def test_bad_input_is_a_clear_error(tmp_path, tiny_root):
    with pytest.raises(ConfigError, match=r"beam_size \(5\) must be at least the largest topk \(20\)"):
        run_model("TIGER", tmp_path, tiny_root, semantic_ids_from="published", beam_size=5)
    with pytest.raises(ConfigError, match="TIGER needs semantic IDs"):
        run_recbole_bbq("TIGER", "tiny", config_dict=model_config(tmp_path, tiny_root))
    partial = tiny_root / "tiny" / "partial.sid.npz"
    tokens, codes, _ = read_semantic_id_file(semantic_id_path(tiny_root / "tiny", "tiny", "published"))
    write_semantic_id_file(partial, tokens[:-2], codes[:-2])
    with pytest.raises(DataError, match="no semantic ID for item"):
        run_model("TIGER", tmp_path, tiny_root, semantic_ids_from=str(partial))


@pytest.mark.parametrize("model", ["TIGER", "BBQRec", "MMTIGER"])
def test_scientific_slice_trains_and_evaluates(tmp_path, scientific_slice, model):
    config_dict = tiny_config(
        tmp_path,
        data_path=str(scientific_slice),
        behaviour={"epochs": 1},
        beam_size=20,
        tokenizer={"epochs": 5},
        rqvae={"epochs": 5},
        train_batch_size=256,
        **SMALL_BACKBONE,
    )
    config_dict.update(
        prepare_semantic_ids(model, "Scientific", config_dict=config_dict, show_progress=False)
    )
    result = run_recbole_bbq(model, "Scientific", config_dict=config_dict)
    assert_metrics(result)
    assert set(result["test_result"]) == {f"{m}@{k}" for m in ("recall", "ndcg") for k in (5, 10, 20)}


def test_cli_runs_the_whole_pipeline_for_tiger(tmp_path, tiny_root):
    import subprocess
    import sys

    from conftest import REPO_DIR

    backbone = [f"--{key}={value}" for key, value in SMALL_BACKBONE.items()]
    proc = subprocess.run(
        [
            sys.executable,
            f"{REPO_DIR}/run_recbole_bbq.py",
            "--model=TIGER",
            "--dataset=tiny",
            f"--data_path={tiny_root}",
            "--semantic_ids_from=published",
            "--epochs=1",
            "--show_progress=False",
            f"--checkpoint_dir={tmp_path / 'saved'}",
            *backbone,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "test result" in proc.stdout + proc.stderr
