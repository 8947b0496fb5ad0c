"""Saved tokenizers: the fitted BBQ/TIGER/MMTIGER tokenizer beside its artifact encodes new items."""

import os
import shutil

import numpy as np
import pytest
import torch

from recbole_bbq.data.features import feature_path, write_feature_file
from recbole_bbq.data.semantic_ids import read_extra_arrays, read_semantic_id_file, semantic_id_path
from recbole_bbq.data.semantic_ids import write_semantic_id_file as real_write_semantic_id_file
from recbole_bbq.errors import DataError
from recbole_bbq.pipeline import prepare_semantic_ids
from recbole_bbq.tokenizer import rqvae, stage
from recbole_bbq.tokenizer.rqvae import fit_rqvae, fit_rqvae_model, rqvae_params
from recbole_bbq.tokenizer.saved import load_tokenizer, tokenizer_weights_path
from recbole_bbq.tokenizer.tokenizer import BBQTokenizer

from conftest import TEST_DATA, tiny_config

TINY = {"epochs": 2, "codebook_size": 8, "latent_dim": 8, "hidden_dim": 16}
ITEMS = [f"i{i}" for i in range(1, 31)]
RNG = np.random.default_rng(0)
# float32, as the feature files store them, so the encoder sees the fit's exact inputs.
FEATURES = {
    "text": RNG.normal(size=(30, 16)).astype(np.float32),
    "image": RNG.normal(size=(30, 12)).astype(np.float32),
}


def make_root(root):
    """tiny plus text (16-d) and image (12-d) feature files and a published code file."""
    shutil.copytree(f"{TEST_DATA}/tiny", root / "tiny")
    for modality, matrix in FEATURES.items():
        write_feature_file(feature_path(root / "tiny", "tiny", modality), ITEMS, matrix)
    codes = np.array([[i % 3, (i // 3) % 4, i // 12] for i in range(30)])
    real_write_semantic_id_file(semantic_id_path(root / "tiny", "tiny", "published"), ITEMS, codes)
    return root


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_root(tmp_path_factory.mktemp("data"))


def semantic_ids(model, root, tmp_path, **overrides):
    """Run ``model``'s tokenize stages on tiny; return the artifact path."""
    settings = dict(
        data_path=str(root), modalities=["text", "image"], behaviour={"epochs": 1}, tokenizer=TINY, rqvae=TINY
    )
    config_dict = tiny_config(tmp_path, **{**settings, **overrides})
    return prepare_semantic_ids(model, "tiny", config_dict=config_dict, show_progress=False)[
        "semantic_ids_file"
    ]


def features_of(path):
    """:data:`FEATURES` in the row order of the artifact ``path``."""
    rows = [ITEMS.index(token) for token in read_semantic_id_file(path)[0]]
    return {modality: matrix[rows] for modality, matrix in FEATURES.items()}


@pytest.fixture(scope="module")
def bbq(root, tmp_path_factory):
    """The BBQ artifact and the in-memory tokenizer that the stage fitted for it."""
    fitted = []

    class Recording(BBQTokenizer):
        def fit(self, *args, **kwargs):
            fitted.append(self)
            return super().fit(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stage, "BBQTokenizer", Recording)
        path = semantic_ids("BBQRec", root, tmp_path_factory.mktemp("bbq"))
    assert len(fitted) == 1
    return path, fitted[0]


@pytest.fixture(scope="module")
def tiger(root, tmp_path_factory):
    return semantic_ids("TIGER", root, tmp_path_factory.mktemp("tiger"))


@pytest.fixture(scope="module")
def mmtiger(root, tmp_path_factory):
    return semantic_ids("MMTIGER", root, tmp_path_factory.mktemp("mmtiger"))


# ----------------------------------------------------------------------------- round trips


def test_bbq_round_trip_equals_the_fitted_tokenizer(bbq):
    path, fitted = bbq
    loaded = load_tokenizer(path)
    assert loaded.kind == "bbq" and loaded.modalities == ["text", "image"]
    features = features_of(path)
    out = loaded.encode(features)
    expected = fitted.encode(features)  # behaviour=None, as for cold-start items
    np.testing.assert_array_equal(out["codes"], expected["codes"]["fused"])
    assert out["codes"].dtype == np.int64 and out["codes"].shape == (30, 3)
    artifact_extra = read_extra_arrays(path)
    assert set(out["extra"]) == set(artifact_extra)
    for signal in ("behaviour", "text", "image", "fused"):
        np.testing.assert_array_equal(out["extra"][f"codes_{signal}"], expected["codes"][signal])
        np.testing.assert_array_equal(out["extra"][f"quantized_{signal}"], expected["quantized"][signal])
        assert out["extra"][f"quantized_{signal}"].dtype == np.float32
    # Modality parts do not depend on behaviour: they match the artifact made with it.
    for modality in ("text", "image"):
        np.testing.assert_array_equal(out["extra"][f"codes_{modality}"], artifact_extra[f"codes_{modality}"])


@pytest.mark.parametrize("kind", ["tiger", "mmtiger"])
def test_rqvae_round_trip_reproduces_the_artifact_codes(kind, request):
    path = request.getfixturevalue(kind)
    loaded = load_tokenizer(path)
    assert loaded.kind == kind
    assert loaded.modalities == (["text"] if kind == "tiger" else ["text", "image"])
    out = loaded.encode(features_of(path))
    _, codes, _ = read_semantic_id_file(path)
    np.testing.assert_array_equal(out["codes"], codes[:, :-1])
    assert out["codes"].dtype == np.int64 and out["extra"] == {}
    # A subset of rows (new items come in any number) gets the same codes.
    part = loaded.encode({m: v[:5] for m, v in features_of(path).items()})
    np.testing.assert_array_equal(part["codes"], codes[:5, :-1])


def test_fit_rqvae_codes_are_those_of_fit_rqvae_model():
    params = rqvae_params({"rqvae": TINY})
    codes, model = fit_rqvae_model(FEATURES["text"], params, show_progress=False)
    np.testing.assert_array_equal(codes, fit_rqvae(FEATURES["text"], params, show_progress=False))
    assert not model.training


# ----------------------------------------------------------------------------- the weights file


def plain_only(value):
    if isinstance(value, dict):
        return all(isinstance(k, str) and plain_only(v) for k, v in value.items())
    if isinstance(value, list):
        return all(plain_only(v) for v in value)
    return value is None or isinstance(value, (torch.Tensor, str, int, float, bool))


@pytest.mark.parametrize("kind", ["bbq", "tiger", "mmtiger"])
def test_weights_file_is_weights_only_loadable_plain_data(kind, request):
    path = request.getfixturevalue(kind)
    path = path[0] if kind == "bbq" else path
    weights = tokenizer_weights_path(path)
    assert weights == path[: -len(".sid.npz")] + ".tokenizer.pth"
    state = torch.load(weights, weights_only=True)
    assert plain_only(state) and state["kind"] == kind
    assert state["cache_key"] == read_semantic_id_file(path)[2]["cache_key"]
    if kind == "bbq":
        assert state["modality_dims"] == [["text", 16], ["image", 12]] and state["behaviour_dim"] > 0
    else:
        assert [(p["modality"], p["input_dim"]) for p in state["parts"]] == [("text", 16), ("image", 12)][
            : len(state["parts"])
        ]


def test_weights_are_written_before_the_artifact(tmp_path, monkeypatch):
    root = make_root(tmp_path / "data")
    seen = []

    def write(path, *args, **kwargs):
        seen.append(os.path.isfile(tokenizer_weights_path(path)))
        return real_write_semantic_id_file(path, *args, **kwargs)

    monkeypatch.setattr(rqvae, "write_semantic_id_file", write)
    semantic_ids("TIGER", root, tmp_path)
    assert seen == [True]


def test_reused_artifact_is_not_refitted_for_a_missing_weights_file(tmp_path):
    root = make_root(tmp_path / "data")
    path = semantic_ids("TIGER", root, tmp_path)
    os.remove(tokenizer_weights_path(path))
    before = os.stat(path).st_mtime_ns
    assert semantic_ids("TIGER", root, tmp_path) == path
    assert os.stat(path).st_mtime_ns == before and not os.path.exists(tokenizer_weights_path(path))
    with pytest.raises(DataError, match=r"no tokenizer weights file .*delete .*rerun the tokenize stage"):
        load_tokenizer(path)


# ----------------------------------------------------------------------------- clear errors


def copy_artifact(path, folder, weights_from=None):
    """``path`` (and the weights of ``weights_from``, default its own) copied into ``folder``."""
    copy = str(folder / os.path.basename(path))
    shutil.copy(path, copy)
    shutil.copy(tokenizer_weights_path(weights_from or path), tokenizer_weights_path(copy))
    return copy


def test_published_codes_cannot_encode_new_items(root, tmp_path):
    path = semantic_ids("TIGER", root, tmp_path, semantic_ids_from="published")
    assert not os.path.exists(tokenizer_weights_path(path))
    with pytest.raises(DataError, match=r"cannot encode new items.*semantic_ids_from"):
        load_tokenizer(path)
    with pytest.raises(DataError, match=r"cannot encode new items.*semantic_ids_from"):
        load_tokenizer(semantic_id_path(root / "tiny", "tiny", "published"))


def test_artifact_without_weights_must_be_rebuilt(tiger, tmp_path):
    copy = copy_artifact(tiger, tmp_path)
    os.remove(tokenizer_weights_path(copy))
    with pytest.raises(DataError, match=r"no tokenizer weights file .*tokenizer\.pth.*Rebuild it: delete"):
        load_tokenizer(copy)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_unreadable_weights_file(tiger, tmp_path, damage):
    copy = copy_artifact(tiger, tmp_path)
    weights = tokenizer_weights_path(copy)
    data = open(weights, "rb").read()
    open(weights, "wb").write(data[: len(data) // 2] if damage == "truncate" else b"not a torch file")
    with pytest.raises(DataError, match=r"tokenizer\.pth: unreadable tokenizer weights file .*Delete it"):
        load_tokenizer(copy)


def test_weights_of_another_fit_are_refused(tiger, mmtiger, tmp_path):
    copy = copy_artifact(tiger, tmp_path, weights_from=mmtiger)
    with pytest.raises(DataError, match="does not belong to"):
        load_tokenizer(copy)


def test_weights_file_refused_by_safe_loading(tiger, tmp_path):
    copy = copy_artifact(tiger, tmp_path)
    torch.save(
        {"kind": "tiger", "format": 1, "object": np.random.default_rng(0)}, tokenizer_weights_path(copy)
    )
    with pytest.raises(DataError, match="unreadable tokenizer weights file"):
        load_tokenizer(copy)


@pytest.mark.parametrize("kind", ["bbq", "mmtiger"])
def test_bad_features_are_clear_errors(kind, request):
    path = request.getfixturevalue(kind)
    loaded = load_tokenizer(path[0] if kind == "bbq" else path)
    good = dict(FEATURES)
    with pytest.raises(DataError, match=r"needs modality 'image'"):
        loaded.encode({"text": good["text"]})
    with pytest.raises(DataError, match=r"modality 'image' .*expected dimension 12.*got shape \[30, 16\]"):
        loaded.encode({**good, "image": good["text"]})
    broken = good["image"].copy()
    broken[7, 3] = np.nan
    with pytest.raises(DataError, match=r"modality 'image' has NaN or inf in row 7"):
        loaded.encode({**good, "image": broken})
    with pytest.raises(DataError, match="different numbers of rows"):
        loaded.encode({**good, "image": good["image"][:4]})
