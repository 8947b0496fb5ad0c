"""The artifact cache helpers, the stage defaults in YAML and the shared quantizer training loop."""

import hashlib
import json
import os

import numpy as np
import pytest
import torch
import yaml

from recbole_bbq.data.artifacts import (
    atomic_write,
    check_cache_key,
    keyed_path,
    reuse_cached,
    save_npz,
    sha256_of,
    sha256_of_bytes,
)
from recbole_bbq.data.semantic_ids import read_semantic_id_file, write_semantic_id_file
from recbole_bbq.errors import DataError
from recbole_bbq.resources import property_file
from recbole_bbq.tokenizer.behaviour import behaviour_params
from recbole_bbq.tokenizer.rqvae import fit_rqvae, rqvae_params
from recbole_bbq.tokenizer.tokenizer import BBQTokenizer
from recbole_bbq.tokenizer.training import LoopSettings, QuantizerHooks, train_quantizer

from conftest import TEST_DATA, tiny_config

# ----------------------------------------------------------------------------- hashing and paths


def test_hashes_keep_their_values():
    """Existing caches stay valid: the digests are the ones the stages computed before."""
    value = {"b": [1, 2.5], "a": "x"}
    assert sha256_of(value) == hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()
    matrix = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert sha256_of_bytes(matrix) == hashlib.sha256(matrix.tobytes()).hexdigest()
    assert sha256_of_bytes(matrix.T) == hashlib.sha256(np.ascontiguousarray(matrix.T).tobytes()).hexdigest()
    assert sha256_of_bytes("é", b"\x00") == hashlib.sha256("é".encode() + b"\x00").hexdigest()


def test_keyed_path_names_kind_and_key_prefix():
    config = {"data_path": "/data/tiny", "dataset": "tiny"}
    assert keyed_path(config, "bbq", "0123456789abcdef" * 4, ".sid.npz") == (
        "/data/tiny/tiny.bbq-0123456789abcdef.sid.npz"
    )


# ----------------------------------------------------------------------------- writing and reuse


def test_atomic_write_leaves_the_target_alone_on_failure(tmp_path):
    path = tmp_path / "a.npz"
    save_npz(str(path), values=np.arange(3))
    before = path.read_bytes()
    with pytest.raises(RuntimeError), atomic_write(str(path)) as tmp:
        open(tmp, "wb").write(b"half")
        raise RuntimeError("killed")
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["a.npz"]


def test_stale_key_error_names_the_file_and_both_keys(tmp_path):
    path = str(tmp_path / "x.sid.npz")
    with pytest.raises(DataError) as error:
        check_cache_key(path, {"cache_key": "a" * 64}, "b" * 64)
    assert str(error.value) == (
        f"{path}: stale artifact (built for key {'a' * 16}, this config and data need {'b' * 16}); "
        "delete it or rerun its stage"
    )
    check_cache_key(path, {}, None)  # no expected key: nothing to check


def load_semantic_ids(path, expected_key):
    tokens, codes, meta = read_semantic_id_file(path)
    check_cache_key(path, meta, expected_key)
    return codes


def test_reuse_cached_only_hits_a_readable_file_of_the_same_key(tmp_path):
    path = str(tmp_path / "t.sid.npz")
    told = []
    assert reuse_cached(path, "k1", load_semantic_ids, told.append) is None and not told  # absent
    write_semantic_id_file(path, ["a", "b"], [[0, 1], [1, 0]], {"cache_key": "k1"})
    np.testing.assert_array_equal(reuse_cached(path, "k1", load_semantic_ids), [[0, 1], [1, 0]])
    assert reuse_cached(path, "k2", load_semantic_ids, told.append) is None
    assert "stale artifact" in str(told[-1])
    open(path, "wb").write(open(path, "rb").read()[:40])
    assert reuse_cached(path, "k1", load_semantic_ids, told.append) is None
    assert "unreadable or truncated" in str(told[-1])


# ----------------------------------------------------------------------------- defaults in YAML


def yaml_section(name, section):
    with open(property_file("tokenizer", name), encoding="utf-8") as f:
        return yaml.safe_load(f)[section]


def test_one_key_set_keeps_the_other_defaults():
    rqvae, behaviour = yaml_section("RQVAE.yaml", "rqvae"), yaml_section("behaviour.yaml", "behaviour")
    assert rqvae_params({"rqvae": None}) == rqvae and rqvae["codebook_size"] == 256
    assert rqvae_params({"rqvae": {"epochs": 3}}) == {**rqvae, "epochs": 3}
    assert behaviour_params({"behaviour": {}}) == behaviour and behaviour["epochs"] == 20
    assert behaviour_params({"behaviour": {"epochs": 2, "MAX_ITEM_LIST_LENGTH": 20}}) == {
        **behaviour,
        "epochs": 2,
        "MAX_ITEM_LIST_LENGTH": 20,
    }


@pytest.mark.parametrize("model", ["TIGER", "MMTIGER", "BBQRec"])
def test_stage_config_gives_every_model_the_yaml_defaults(tmp_path, model):
    from recbole_bbq.pipeline import stage_config

    defaults = yaml_section("RQVAE.yaml", "rqvae")
    settings = tiny_config(tmp_path, data_path=TEST_DATA)
    config = stage_config("tiny", config_dict=settings, model=model)
    assert rqvae_params(config) == defaults
    assert behaviour_params(config) == yaml_section("behaviour.yaml", "behaviour")
    user = stage_config("tiny", config_dict={**settings, "rqvae": {"levels": 2}}, model=model)
    assert rqvae_params(user) == {**defaults, "levels": 2}


# ----------------------------------------------------------------------------- the training loop


def test_same_seed_fits_give_identical_codes():
    rng = np.random.default_rng(0)
    features, behaviour = {"text": rng.normal(size=(60, 6))}, rng.normal(size=(60, 4))
    small = dict(epochs=3, codebook_size=4, latent_dim=4, hidden_dim=8, batch_size=16, seed=3, dropout=0.1)
    fits = [BBQTokenizer(**small).fit(features, behaviour, show_progress=False) for _ in range(2)]
    first, second = (fit.encode(features, behaviour) for fit in fits)
    np.testing.assert_array_equal(first["semantic_ids"], second["semantic_ids"])
    for signal, quantized in first["quantized"].items():
        assert np.array_equal(quantized, second["quantized"][signal])
    assert fits[0].history == fits[1].history and len(fits[0].history) == 3
    params = dict(levels=2, codebook_size=4, latent_dim=4, hidden_dim=8, beta=0.25, epochs=3)
    params.update(batch_size=16, learning_rate=0.001, seed=5)
    np.testing.assert_array_equal(
        fit_rqvae(features["text"], params, show_progress=False),
        fit_rqvae(features["text"], params, show_progress=False),
    )


class RecordingHooks(QuantizerHooks):
    """A one-parameter 'model' that records the loop's calls and the random draws it sees."""

    def __init__(self):
        self.calls = []

    def build_model(self):
        self.calls.append(("build", torch.rand(()).item()))
        return torch.nn.Linear(1, 1)

    def parameter_groups(self, model):
        return [(model.parameters(), 0.1)]

    def init_codebooks(self, model):
        self.calls.append(("init",))

    def train_step(self, model, optimizers, batch):
        self.calls.append(("step", batch.tolist()))
        return {"total": float(len(batch))}

    def reseed_dead_codes(self, model, generator):
        self.calls.append(("reseed", torch.randint(100, (1,), generator=generator).item()))
        return 1


def test_loop_seeds_then_builds_inits_and_reseeds_after_every_epoch_but_the_last():
    settings = LoopSettings(seed=1, epochs=2, batch_size=3, description="test", show_progress=False)
    hooks = RecordingHooks()
    result = train_quantizer(hooks, 5, settings)
    torch.manual_seed(1)
    generator = torch.Generator().manual_seed(1)
    expected = [("build", torch.rand(()).item()), ("init",)]
    first = torch.randperm(5, generator=generator).split(3)
    expected += [("step", batch.tolist()) for batch in first]
    expected.append(("reseed", torch.randint(100, (1,), generator=generator).item()))
    expected += [("step", batch.tolist()) for batch in torch.randperm(5, generator=generator).split(3)]
    assert hooks.calls == expected
    # per epoch: the row-weighted mean of each loss term, and the re-seeded count
    assert result.history == [
        {"total": 3 * 3 / 5 + 2 * 2 / 5, "reseeded": 1},
        {"total": 3 * 3 / 5 + 2 * 2 / 5},
    ]
