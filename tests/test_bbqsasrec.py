"""BBQSASRec: RecBole's SASRec plus the bucketed similarity bias (on the synthetic ``tiny``)."""

import shutil
import sys

import numpy as np
import pytest
import torch

from recbole_bbq.config import Config
from recbole_bbq.data.features import feature_path, write_feature_file
from recbole_bbq.errors import ConfigError
from recbole_bbq.model.layers import SimilarityBias
from recbole_bbq.quick_start import run_recbole_bbq
from recbole_bbq.utils import create_dataset, get_model

from conftest import TEST_DATA, tiny_config


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    """tiny plus random 16-d text vectors, and a small BBQ tokenizer artifact built once."""
    from recbole_bbq.tokenizer.stage import run_tokenizer_stage

    work = tmp_path_factory.mktemp("bbqsasrec")
    root = work / "data"
    shutil.copytree(f"{TEST_DATA}/tiny", root / "tiny")
    tokens = [f"i{i}" for i in range(1, 31)]
    matrix = np.random.default_rng(0).normal(size=(30, 16))
    write_feature_file(feature_path(root / "tiny", "tiny", "text"), tokens, matrix)
    with pytest.MonkeyPatch.context() as patch:  # module fixtures run before conftest's isolation
        patch.setattr(sys, "argv", [sys.argv[0]])
        patch.chdir(work)
        config = Config(
            "SASRec",
            "tiny",
            config_dict=tiny_config(
                work,
                data_path=str(root),
                modalities=["text"],
                behaviour={"epochs": 1},
                tokenizer={"epochs": 2, "codebook_size": 8, "latent_dim": 8, "hidden_dim": 16},
            ),
        )
        path, _ = run_tokenizer_stage(config, show_progress=False)
    return {"root": str(root), "path": path}


def bbq_config(tmp_path, artifact, **overrides):
    settings = dict(data_path=artifact["root"], semantic_ids_file=artifact["path"], modalities=["text"])
    settings.update(overrides)
    return tiny_config(tmp_path, **settings)


def build(model_name, config_dict, dataset=None):
    """``(model, dataset)`` for ``model_name`` on tiny, in eval mode, seeded like a run."""
    config = Config(model_name, "tiny", config_dict=config_dict)
    dataset = dataset if dataset is not None else create_dataset(config)
    torch.manual_seed(0)
    return get_model(model_name)(config, dataset).eval(), dataset


def sample_batch(n_items, batch=6, length=10):
    """Histories of random items with left-aligned padding, and their lengths."""
    generator = torch.Generator().manual_seed(1)
    item_seq = torch.randint(1, n_items, (batch, length), generator=generator)
    item_seq_len = torch.tensor([10, 1, 3, 7, 10, 5])[:batch]
    item_seq[torch.arange(length).unsqueeze(0) >= item_seq_len.unsqueeze(1)] = 0
    return item_seq, item_seq_len


def sasrec_twin(tmp_path, artifact, dataset):
    """RecBole's SASRec on the same config and dataset (the reference backbone)."""
    return build("SASRec", bbq_config(tmp_path, artifact), dataset)[0]


@pytest.mark.parametrize("source", ["cosine", "codes"])
def test_trains_and_evaluates_with_full_ranking(tmp_path, artifact, source):
    result = run_recbole_bbq(
        "BBQSASRec", "tiny", config_dict=bbq_config(tmp_path, artifact, sim_source=source)
    )
    test_result = result["test_result"]
    assert {"recall@10", "ndcg@10"} <= set(test_result)
    assert all(0.0 <= value <= 1.0 for value in test_result.values()), test_result


def test_sim_attention_off_is_plain_sasrec(tmp_path, artifact):
    model, dataset = build("BBQSASRec", bbq_config(tmp_path, artifact, sim_attention=False))
    assert model.similarity_bias is None
    sasrec = sasrec_twin(tmp_path, artifact, dataset)
    model.load_state_dict(sasrec.state_dict())  # strict: no extra parameters
    item_seq, item_seq_len = sample_batch(dataset.item_num)
    with torch.no_grad():
        assert torch.equal(model(item_seq, item_seq_len), sasrec(item_seq, item_seq_len))


@pytest.mark.parametrize("source", ["cosine", "codes"])
def test_zero_bias_is_sasrec_and_a_nonzero_bias_changes_the_output(tmp_path, artifact, source):
    config = bbq_config(tmp_path, artifact, sim_source=source)
    dataset = create_dataset(Config("BBQSASRec", "tiny", config_dict=config))
    # The 2-epoch tiny artifact puts every pair in the top cosine bucket, and a bias that is
    # constant over a row cannot change a softmax: spread the vectors over the sphere instead.
    generator = torch.Generator().manual_seed(2)
    dataset.item_quantized = {
        signal: torch.randn(x.shape, generator=generator) for signal, x in dataset.item_quantized.items()
    }
    model, _ = build("BBQSASRec", config, dataset)
    sasrec = sasrec_twin(tmp_path, artifact, dataset)
    missing, unexpected = model.load_state_dict(sasrec.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("similarity_bias.") for k in missing)
    assert torch.count_nonzero(model.similarity_bias.weight.weight) == 0  # zero-initialised

    item_seq, item_seq_len = sample_batch(dataset.item_num)
    assert model.similarity_bias.buckets(item_seq).unique().numel() > 1
    with torch.no_grad():
        expected = sasrec(item_seq, item_seq_len)
        assert torch.equal(model(item_seq, item_seq_len), expected)
        model.similarity_bias.weight.weight.normal_(std=2.0, generator=generator)
        assert not torch.allclose(model(item_seq, item_seq_len), expected)


def test_bias_shape_and_identical_items_share_the_top_bucket(tmp_path, artifact):
    model, dataset = build("BBQSASRec", bbq_config(tmp_path, artifact))
    item_seq, _ = sample_batch(dataset.item_num)
    n_heads, length = model.n_heads, item_seq.shape[1]
    assert model.similarity_bias(item_seq).shape == (item_seq.shape[0], n_heads, length, length)
    assert model.get_attention_mask(item_seq).shape == (item_seq.shape[0], n_heads, length, length)

    # Items 1 and 2 get identical quantized vectors for every signal, item 3 the opposite ones.
    vectors = {signal: x.clone() for signal, x in dataset.item_quantized.items()}
    for x in vectors.values():
        x[2] = x[1]
        x[3] = -x[1]
    pairs = [["text", "text"], ["behaviour", "behaviour"]]
    bias = SimilarityBias(n_heads, n_buckets=8, item_vectors=vectors, pairs=pairs)
    buckets = bias.buckets(torch.tensor([[1, 2, 3]]))[0]
    assert buckets[0, 1] == buckets[1, 0] == buckets[0, 0] == 7  # cos = 1: top bucket
    assert buckets[0, 2] == 0  # cos = -1: bottom bucket

    # The same through the dataset hook: patch the attached vectors before building the model.
    original = dataset.item_quantized
    dataset.item_quantized = vectors
    try:
        patched, _ = build("BBQSASRec", bbq_config(tmp_path, artifact), dataset)
    finally:
        dataset.item_quantized = original
    top_bucket = model.similarity_bias.n_buckets - 1
    assert patched.similarity_bias.buckets(torch.tensor([[1, 2]]))[0, 0, 1] == top_bucket

    # sim_source: codes -- equal fused codes give the top bucket L (dedup level left out).
    codes = torch.tensor([[0, 0, 0], [1, 2, 3], [1, 2, 3], [1, 2, 0], [4, 2, 3]])
    by_codes = SimilarityBias(n_heads, item_codes=codes)
    prefix = by_codes.buckets(torch.tensor([[1, 2, 3, 4]]))[0]
    assert prefix[0].tolist() == [3, 3, 2, 0]


def test_missing_artifact_is_a_config_error(tmp_path, artifact):
    with pytest.raises(ConfigError, match=r"needs the quantized item vectors .*set semantic_ids_file"):
        build("BBQSASRec", tiny_config(tmp_path))
    with pytest.raises(ConfigError, match=r"sim_source: codes needs the semantic IDs .*tokenizer stage"):
        build("BBQSASRec", tiny_config(tmp_path, sim_source="codes"))
    with pytest.raises(ConfigError, match=r"sim_source must be 'cosine' or 'codes'"):
        build("BBQSASRec", bbq_config(tmp_path, artifact, sim_source="cosines"))
    with pytest.raises(ConfigError, match=r"sim_pairs use signals \['image'\]"):
        build("BBQSASRec", bbq_config(tmp_path, artifact, sim_pairs=[["text", "image"]]))
    model, _ = build("BBQSASRec", tiny_config(tmp_path, sim_attention=False))  # needs no artifact
    assert model.similarity_bias is None


@pytest.mark.parametrize("source", ["cosine", "codes"])
def test_bbqrec_and_bbqsasrec_build_identical_buckets_from_one_artifact(tmp_path, artifact, source):
    # The same sim_buckets for both (their YAML defaults differ: BBQRec 16, chosen on valid; BBQSASRec 8).
    config = bbq_config(tmp_path, artifact, sim_source=source, n_heads=2, sim_buckets=8)
    sasrec_bias = build("BBQSASRec", config)[0].similarity_bias
    bbqrec_bias = build("BBQRec", {**config, "d_model": 32, "d_kv": 16, "d_ff": 64})[0].similarity_bias
    item_seq, _ = sample_batch(31)
    assert sasrec_bias.n_buckets == bbqrec_bias.n_buckets
    assert torch.equal(sasrec_bias.buckets(item_seq), bbqrec_bias.buckets(item_seq))
    if source == "codes":  # the L levels without the dedup code: buckets 0..L
        dataset = create_dataset(Config("BBQRec", "tiny", config_dict=config))
        levels = dataset.item_signal_codes["fused"].shape[1]
        assert bbqrec_bias.n_buckets == levels + 1
