"""BBQ tokenizer on real data (Scientific-MM from ../shared/data) with small budgets."""

import shutil
import subprocess
import sys

import numpy as np
import pytest

from recbole_bbq.config import Config
from recbole_bbq.data.features import feature_path, write_feature_file
from recbole_bbq.errors import ConfigError, DataError
from recbole_bbq.tokenizer.behaviour import behaviour_embeddings
from recbole_bbq.tokenizer.stage import load_artifact, run_tokenizer_stage, tokenizer_inputs
from recbole_bbq.tokenizer.tokenizer import BBQTokenizer

from conftest import REPO_DIR, SHARED_DATA, TEST_DATA, require_shared, tiny_config

EPOCHS = 40  # enough for the codebooks to settle on 1,585 items; ~12 s per fit on 2 cores


@pytest.fixture(scope="module")
def scientific(tmp_path_factory):
    """Scientific-MM converted once, with behaviour vectors from a 3-epoch train-split SASRec."""
    require_shared("amazon_scientific_mm")
    from recbole_bbq.converters import unisrec

    root = tmp_path_factory.mktemp("data")
    unisrec.convert(f"{SHARED_DATA}/amazon_scientific_mm", "Scientific", str(root))
    config = Config(
        "SASRec",
        "Scientific",
        config_dict=tiny_config(root, data_path=str(root), behaviour={"epochs": 3}),
    )
    _, tokens, features, behaviour, _ = tokenizer_inputs(config, show_progress=False)
    return {"root": root, "config": config, "tokens": tokens, "features": features, "behaviour": behaviour}


def fit(scientific, **params):
    """A tokenizer fitted on Scientific-MM and its statistics."""
    features, behaviour = scientific["features"], scientific["behaviour"]
    tokenizer = BBQTokenizer(**{"epochs": EPOCHS, **params}).fit(features, behaviour, show_progress=False)
    return tokenizer, tokenizer.statistics(features, behaviour)


@pytest.fixture(scope="module")
def default_fit(scientific):
    return fit(scientific)


def test_same_seed_gives_the_same_codes(scientific):
    runs = [fit(scientific, epochs=3, seed=7)[0] for _ in range(2)]
    codes = [run.encode(scientific["features"], scientific["behaviour"])["semantic_ids"] for run in runs]
    np.testing.assert_array_equal(codes[0], codes[1])


def test_collisions_and_codebook_usage(default_fit):
    _, stats = default_fit
    print(f"collision rate before dedup: {stats['collision_rate']:.4f}")
    # Measured 0.0076-0.0101 over seeds and budgets (L=3, K=256); the bar is < 0.20.
    assert stats["collision_rate"] < 0.03
    for level in (1, 2, 3):
        assert stats[f"level{level}_usage"] >= 0.25, stats


def test_semantic_ids_are_unique_and_encode_handles_cold_start(default_fit, scientific):
    tokenizer, _ = default_fit
    encoded = tokenizer.encode(scientific["features"], scientific["behaviour"])
    ids = encoded["semantic_ids"]
    assert ids.shape == (1585, 4) and len({tuple(r) for r in ids.tolist()}) == 1585
    assert set(encoded["quantized"]) == {"behaviour", "text", "image", "fused"}
    cold = tokenizer.encode({m: x[:10] for m, x in scientific["features"].items()})  # no behaviour
    assert cold["semantic_ids"].shape == (10, 4) and (cold["codes"]["fused"] < 256).all()


def test_alignment_raises_behaviour_neighbour_first_code_agreement(default_fit, scientific):
    _, aligned = default_fit
    _, unaligned = fit(scientific, use_align=False)
    with_align = aligned["first_code_neighbour_agreement"]
    without_align = unaligned["first_code_neighbour_agreement"]
    print(
        f"nearest behaviour neighbour shares first code: align {with_align:.4f}, no align {without_align:.4f}"
    )
    assert with_align > without_align


def test_club_penalty_lowers_the_club_estimate(default_fit, scientific):
    _, with_club = default_fit
    _, without_club = fit(scientific, use_club=False)
    estimates = with_club["club_estimate"], without_club["club_estimate"]
    print("final CLUB estimate: use_club {:.4f}, off {:.4f}".format(*estimates))
    assert with_club["club_estimate"] < without_club["club_estimate"]


def test_fragmented_quantization_uses_one_quantizer_per_signal(scientific):
    tokenizer, _ = fit(scientific, epochs=1, shared_codebook=False, codebook_size=16)
    assert len(tokenizer.model.unique_quantizers()) == 4
    shared = BBQTokenizer(epochs=1, codebook_size=16).fit(
        {"text": scientific["features"]["text"]}, scientific["behaviour"], show_progress=False
    )
    assert len(shared.model.unique_quantizers()) == 1  # one modality works too


def test_codebook_size_below_two_is_rejected(scientific):
    with pytest.raises(ConfigError, match=r"codebook_size \(K\) must be at least 2, got 1"):
        BBQTokenizer(codebook_size=1).fit(
            scientific["features"], scientific["behaviour"], show_progress=False
        )
    with pytest.raises(ConfigError, match=r"unknown tokenizer keys \['levls'\]"):
        BBQTokenizer(levls=3)


# ----------------------------------------------------------------------------- stage and artifact


@pytest.fixture
def tiny_with_text(tmp_path):
    """tiny (synthetic) plus a random 16-d text feature file, as a dataset folder in tmp."""
    root = tmp_path / "data"
    shutil.copytree(f"{TEST_DATA}/tiny", root / "tiny")
    tokens = [f"i{i}" for i in range(1, 31)]
    matrix = np.random.default_rng(0).normal(size=(30, 16))
    write_feature_file(feature_path(root / "tiny", "tiny", "text"), tokens, matrix)
    return root


def tiny_stage_config(tmp_path, root, **overrides):
    settings = dict(
        data_path=str(root),
        modalities=["text"],
        behaviour={"epochs": 1},
        tokenizer={"epochs": 2, "codebook_size": 8, "latent_dim": 8, "hidden_dim": 16},
    )
    settings.update(overrides)
    return Config("SASRec", "tiny", config_dict=tiny_config(tmp_path, **settings))


def test_artifact_is_cached_keyed_and_validated(tmp_path, tiny_with_text):
    config = tiny_stage_config(tmp_path, tiny_with_text)
    path, stats = run_tokenizer_stage(config, show_progress=False)
    artifact = load_artifact(path, expected_key=artifact_key(path))
    assert artifact["codes"].shape == (30, 4) and artifact["quantized_fused"].shape == (30, 8)
    assert (tiny_with_text / "tiny" / path.split("/")[-1].replace(".sid.npz", ".usage.png")).is_file()
    assert set(stats) >= {"collision_rate", "max_dedup_code", "level1_usage", "level1_perplexity", "loss_rec"}

    again, _ = run_tokenizer_stage(config, show_progress=False)  # reused, not refitted
    assert again == path

    other = tiny_stage_config(tmp_path, tiny_with_text, tokenizer={"epochs": 2, "codebook_size": 6})
    other_path, _ = run_tokenizer_stage(other, show_progress=False)
    assert other_path != path
    with pytest.raises(DataError, match="stale artifact"):
        load_artifact(other_path, expected_key=artifact_key(path))

    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 3])
    with pytest.raises(DataError, match="unreadable or truncated"):
        load_artifact(path)


def artifact_key(path):
    from recbole_bbq.data.semantic_ids import read_semantic_id_file

    return read_semantic_id_file(path)[2]["cache_key"]


def test_listed_modality_without_feature_file_is_a_clear_error(tmp_path, tiny_with_text):
    config = tiny_stage_config(tmp_path, tiny_with_text, modalities=["text", "image"])
    with pytest.raises(ConfigError, match=r"modality 'image' .*tiny.image.npz does not exist"):
        run_tokenizer_stage(config, show_progress=False)


def test_behaviour_vectors_ignore_valid_and_test_targets(tmp_path, tiny_with_text):
    config = tiny_stage_config(tmp_path, tiny_with_text)
    before = behaviour_embeddings(config, show_progress=False)

    inter = tiny_with_text / "tiny" / "tiny.inter"
    header, *rows = inter.read_text().splitlines()
    last_row_of = {row.split("\t")[0]: i for i, row in enumerate(rows)}
    # change the test target (last interaction) of u1 to an item seen earlier in the file
    i = last_row_of["u1"]
    user, item, rating, time = rows[i].split("\t")
    rows[i] = "\t".join([user, rows[0].split("\t")[1], rating, time])
    inter.write_text("\n".join([header, *rows]) + "\n")
    after = behaviour_embeddings(config, show_progress=False)

    assert after.meta["cache_key"] == before.meta["cache_key"]
    assert list(after.tokens) == list(before.tokens)
    np.testing.assert_array_equal(after.features, before.features)

    # the key does react to the train split: change u1's first interaction
    j = min(k for k, row in enumerate(rows) if row.startswith("u1\t"))
    user, item, rating, time = rows[j].split("\t")
    rows[j] = "\t".join([user, rows[last_row_of["u2"]].split("\t")[1], rating, time])
    inter.write_text("\n".join([header, *rows]) + "\n")
    assert behaviour_embeddings(config, show_progress=False).meta["cache_key"] != before.meta["cache_key"]


def test_cli_tokenize_stage_prints_the_statistics_table(tmp_path, tiny_with_text):
    proc = subprocess.run(
        [
            sys.executable,
            f"{REPO_DIR}/run_recbole_bbq.py",
            "--model=BBQRec",
            "--dataset=tiny",
            "--stage=tokenize",
            f"--data_path={tiny_with_text}",
            "--modalities=['text']",
            "--behaviour={'epochs': 1}",
            "--show_progress=False",
            "--state=ERROR",
            "--tokenizer={'epochs': 2, 'codebook_size': 8, 'latent_dim': 8, 'hidden_dim': 16}",
            f"--checkpoint_dir={tmp_path / 'saved'}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert any(line.startswith("collision rate before dedup: 0.") for line in lines), proc.stdout
    assert any(line.startswith("level 3 code usage: ") for line in lines)


def test_dataset_hook_attaches_the_tokenizer_artifact(tmp_path, tiny_with_text):
    from recbole_bbq.data import MultiModalSequentialDataset

    config = tiny_stage_config(tmp_path, tiny_with_text)
    path, _ = run_tokenizer_stage(config, show_progress=False)
    artifact = load_artifact(path)
    dataset = MultiModalSequentialDataset(config)
    ids = dataset.attach_semantic_ids(path, expected_key=artifact["meta"]["cache_key"])
    item_id = dataset.token2id(dataset.iid_field, "i5")
    row = list(artifact["tokens"]).index("i5")
    assert ids[item_id].tolist() == artifact["codes"][row].tolist()
    np.testing.assert_array_equal(
        dataset.item_quantized["fused"][item_id].numpy(), artifact["quantized_fused"][row]
    )
    assert (
        set(dataset.item_quantized) == {"behaviour", "text", "fused"}
        and not dataset.item_quantized["text"][0].any()
    )
    with pytest.raises(DataError, match="stale artifact"):
        dataset.attach_semantic_ids(path, expected_key="0" * 64)
