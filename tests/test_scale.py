"""Scale: the synthetic catalogue generator, chunked/mini-batch tokenizer paths, benchmarks/scale.py."""

import filecmp
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import recbole_bbq.tokenizer.quantizer as quantizer_module
import recbole_bbq.tokenizer.tokenizer as tokenizer_module
from recbole_bbq.config import Config
from recbole_bbq.data import MultiModalSequentialDataset
from recbole_bbq.tokenizer.quantizer import ResidualQuantizer, nearest_codes
from recbole_bbq.tokenizer.rqvae import fit_rqvae
from recbole_bbq.tokenizer.tokenizer import BBQTokenizer, first_code_neighbour_agreement
from recbole_bbq.utils import data_preparation

from conftest import REPO_DIR

TINY = {"codebook_size": 8, "latent_dim": 8, "hidden_dim": 16, "batch_size": 64}
# Codes of a 40-item fit (inputs of _small_inputs(40)) computed with the code before chunking
# and mini-batch k-means existed: small fits must keep producing exactly these.
EXPECTED_BBQ = (
    "5120066056000150531006405220540004505060460055704110511044304700565047100650077047604240"
    "514051214670536040004230456053000610533040200530067001404740000054704320"
)
EXPECTED_RQVAE = (
    "333424561633166242232571012426450501447517031114323503607530131705111651430717432220023552"
    "313170123721251311440615511000"
)


def _load_synthetic():
    spec = importlib.util.spec_from_file_location(
        "synthetic", os.path.join(REPO_DIR, "benchmarks", "synthetic.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


synthetic = _load_synthetic()


def _small_inputs(n):
    rng = np.random.default_rng(n)
    features = {"text": rng.normal(size=(n, 16)), "image": rng.normal(size=(n, 12))}
    return {m: x.astype(np.float32) for m, x in features.items()}, rng.normal(size=(n, 8)).astype(np.float32)


def _digits(codes):
    return "".join(str(code) for code in np.asarray(codes).ravel().tolist())


def test_codes_of_a_small_fit_are_unchanged():
    features, behaviour = _small_inputs(40)
    tokenizer = BBQTokenizer(epochs=3, **TINY).fit(features, behaviour, show_progress=False)
    assert _digits(tokenizer.encode(features, behaviour)["semantic_ids"]) == EXPECTED_BBQ
    stats = tokenizer.statistics(features, behaviour)
    assert stats["first_code_neighbour_agreement"] == 0.35
    assert stats["collision_rate"] == pytest.approx(0.025)
    params = dict(levels=3, beta=0.25, epochs=3, learning_rate=1e-3, seed=2020, **TINY)
    assert _digits(fit_rqvae(features["text"], params, show_progress=False)) == EXPECTED_RQVAE


def test_generator_writes_a_deterministic_folder_that_recbole_bbq_loads(tmp_path):
    spec = synthetic.SyntheticSpec.create(500, seed=3)
    for copy in ("a", "b"):
        synthetic.write_dataset(spec, str(tmp_path / copy), "syn")
    folder_a, folder_b = tmp_path / "a" / "syn", tmp_path / "b" / "syn"
    names = sorted(os.listdir(folder_a))
    assert names == sorted(os.listdir(folder_b)) and not any(
        n.startswith(".") for n in os.listdir(tmp_path / "a")
    )
    for name in names:
        if name.endswith(".npz"):  # zip entries carry timestamps: compare the arrays
            with np.load(folder_a / name) as a, np.load(folder_b / name) as b:
                assert all(np.array_equal(a[key], b[key]) for key in a.files)
        else:
            assert filecmp.cmp(folder_a / name, folder_b / name, shallow=False), name
    config = Config(
        "SASRec",
        "syn",
        config_dict={"data_path": str(tmp_path / "a"), "state": "ERROR", "train_neg_sample_args": None},
    )
    dataset = MultiModalSequentialDataset(config)
    assert dataset.item_num == 501  # the whole catalogue (NAME.item) plus padding
    assert tuple(dataset.item_features["text"].shape) == (501, 384)
    assert tuple(dataset.item_features["image"].shape) == (501, 512)
    assert not dataset.item_feature_missing["text"][1:].any()
    _, valid, test = data_preparation(config, dataset)
    assert len(test.dataset) == len(valid.dataset) == spec.users == 100


def test_sessions_stay_in_few_clusters_and_modalities_share_them():
    spec = synthetic.SyntheticSpec.create(2000, seed=1)
    clusters = synthetic.item_clusters(spec)
    sequences = [seq for _, seq in synthetic.user_sequences(spec, clusters)]
    assert len(sequences) == spec.users and min(len(s) for s in sequences) >= 5
    same = np.mean([np.mean(clusters[s[1:]] == clusters[s[:-1]]) for s in sequences])
    assert same > 0.4  # random pairs would agree about 1 / 45 of the time
    text, image = (
        F.normalize(torch.as_tensor(synthetic.item_vectors(spec, m)), dim=-1) for m in ("text", "image")
    )
    text_neighbour = (text[:200] @ text.T).fill_diagonal_(-2).argmax(dim=1).numpy()
    image_neighbour = (image[:200] @ image.T).fill_diagonal_(-2).argmax(dim=1).numpy()
    assert np.mean(clusters[text_neighbour] == clusters[image_neighbour]) > 0.8


def test_chunked_nearest_quantize_and_reseed_equal_one_call(monkeypatch):
    torch.manual_seed(0)
    quantizer = ResidualQuantizer(8, levels=3, codebook_size=16)
    z = torch.randn(1000, 8)
    codes, quantized = quantizer.quantize(z)
    nearest = nearest_codes(z, quantizer.codebooks[0])
    monkeypatch.setattr(quantizer_module, "NEAREST_CHUNK_ROWS", 64)
    assert torch.equal(nearest_codes(z, quantizer.codebooks[0]), nearest)
    chunked_codes, chunked_quantized = quantizer.quantize(z)
    assert torch.equal(chunked_codes, codes) and torch.equal(chunked_quantized, quantized)
    reseeded = []
    for chunk_rows in (64, 65_536):
        monkeypatch.setattr(quantizer_module, "NEAREST_CHUNK_ROWS", chunk_rows)
        copy = ResidualQuantizer(8, levels=3, codebook_size=16)
        copy.load_state_dict(quantizer.state_dict())
        copy.usage[:, ::2] = 1  # every other code is dead
        assert copy.reseed_dead_codes(z, torch.Generator().manual_seed(0)) == 24
        reseeded.append(copy.codebooks.detach().clone())
    assert torch.equal(reseeded[0], reseeded[1])


def test_chunked_encode_and_statistics_equal_one_chunk(monkeypatch):
    features, behaviour = _small_inputs(300)
    tokenizer = BBQTokenizer(epochs=1, **TINY).fit(features, behaviour, show_progress=False)
    encoded, stats = tokenizer.encode(features, behaviour), tokenizer.statistics(features, behaviour)
    monkeypatch.setattr(tokenizer_module, "ENCODE_CHUNK_ROWS", 70)
    monkeypatch.setattr(quantizer_module, "NEAREST_CHUNK_ROWS", 50)
    chunked = tokenizer.encode(features, behaviour)
    np.testing.assert_array_equal(chunked["semantic_ids"], encoded["semantic_ids"])
    for kind in ("codes", "quantized", "latents"):
        for signal, value in encoded[kind].items():
            np.testing.assert_allclose(chunked[kind][signal], value, rtol=0, atol=1e-6)
    cold = tokenizer.encode(features)["semantic_ids"]
    monkeypatch.setattr(tokenizer_module, "ENCODE_CHUNK_ROWS", 65_536)
    np.testing.assert_array_equal(tokenizer.encode(features)["semantic_ids"], cold)
    monkeypatch.setattr(tokenizer_module, "ENCODE_CHUNK_ROWS", 70)
    chunked_stats = tokenizer.statistics(features, behaviour)
    assert chunked_stats == pytest.approx(stats, rel=1e-5, abs=1e-6)


def test_rqvae_codes_in_chunks_equal_one_call(monkeypatch):
    from recbole_bbq.tokenizer import rqvae

    torch.manual_seed(0)
    params = {"latent_dim": 8, "hidden_dim": 16, "levels": 3, "codebook_size": 8, "beta": 0.25}
    model = rqvae.build_rqvae(12, params)
    x = torch.randn(300, 12)
    whole = rqvae.rqvae_codes(model, x)
    monkeypatch.setattr(rqvae, "NEAREST_CHUNK_ROWS", 70)
    np.testing.assert_array_equal(rqvae.rqvae_codes(model, x), whole)


def test_minibatch_kmeans_path_gives_valid_codes(monkeypatch):
    monkeypatch.setattr(quantizer_module, "MINIBATCH_KMEANS_ROWS", 100)
    torch.manual_seed(0)
    centres = torch.randn(40, 8) * 3
    z = centres[torch.randint(40, (3000,))] + 0.1 * torch.randn(3000, 8)
    quantizer = ResidualQuantizer(8, levels=2, codebook_size=32)
    quantizer.init_kmeans(z, seed=0)
    codes, quantized = quantizer.quantize(z)
    assert torch.isfinite(quantizer.codebooks).all() and int(codes.max()) < 32
    assert len(torch.unique(codes[:, 0])) >= 30
    assert float(((z - quantized) ** 2).mean()) < 0.05 * float(z.var())
    few = ResidualQuantizer(8, levels=2, codebook_size=32)
    few.init_kmeans(centres[torch.arange(300) % 5], seed=0)  # 5 distinct rows < K
    assert torch.isfinite(few.codebooks).all()
    features, behaviour = _small_inputs(120)  # 480 quantizer rows: the mini-batch path
    tokenizer = BBQTokenizer(epochs=1, **TINY).fit(features, behaviour, show_progress=False)
    semantic_ids = tokenizer.encode(features, behaviour)["semantic_ids"]
    assert len(np.unique(semantic_ids, axis=0)) == 120 and semantic_ids[:, :3].max() < 8


def _exact_agreement_per_item(behaviour, codes):
    vectors = F.normalize(torch.as_tensor(behaviour), dim=-1)
    similarity = (vectors @ vectors.T).fill_diagonal_(-float("inf"))
    return codes[:, 0] == codes[similarity.argmax(dim=1).numpy(), 0]


def test_neighbour_agreement_on_a_sample_equals_the_exact_one(monkeypatch):
    rng = np.random.default_rng(0)
    behaviour = rng.normal(size=(400, 8)).astype(np.float32)
    codes = rng.integers(0, 3, size=(400, 3))
    agree = _exact_agreement_per_item(behaviour, codes)
    assert first_code_neighbour_agreement(behaviour, codes) == float(agree.mean())
    monkeypatch.setattr(tokenizer_module, "NEIGHBOUR_CHUNK_ELEMENTS", 4000)  # 10 rows per chunk
    assert first_code_neighbour_agreement(behaviour, codes) == float(agree.mean())
    assert first_code_neighbour_agreement(behaviour, codes, sample_size=400) == float(agree.mean())
    queries = np.sort(np.random.default_rng(5).choice(400, size=150, replace=False))
    sampled = first_code_neighbour_agreement(behaviour, codes, sample_size=150, seed=5)
    assert sampled == float(agree[queries].mean())


def test_scale_benchmark_runs_end_to_end_and_resumes(tmp_path):
    command = [
        sys.executable,
        os.path.join(REPO_DIR, "benchmarks", "scale.py"),
        "--items=2000",
        f"--data_path={tmp_path / 'data'}",
        f"--results_dir={tmp_path / 'results'}",
        "--tokenizer_epochs=1",
        "--codebook_size=16",
        "--train_steps=2",
        "--latency_users=2",
        "--latency_repeats=1",
        "--batch_size=16",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line.split() for line in done.stdout.splitlines() if line.strip().startswith("2,000")]
    assert len(rows) == 1 and len(rows[0]) == 18, done.stdout
    assert (tmp_path / "results" / "n2000.json").is_file() and (tmp_path / "results" / "scale.png").is_file()
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0 and "reusing" in again.stdout, again.stdout + again.stderr
