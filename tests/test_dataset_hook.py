"""The multi-modal dataset hook and the benchmark-history fix, on synthetic data."""

import shutil

import numpy as np
import pytest

from recbole_bbq.config import Config
from recbole_bbq.data import MultiModalSequentialDataset, SequentialDataset
from recbole_bbq.data.features import feature_path, write_feature_file
from recbole_bbq.data.semantic_ids import semantic_id_path, write_semantic_id_file
from recbole_bbq.errors import ConfigError, DataError
from recbole_bbq.quick_start import run_recbole_bbq
from recbole_bbq.utils import create_dataset

from conftest import SHARED_DATA, TEST_DATA, require_shared, tiny_config


@pytest.fixture
def tiny_copy(tmp_path):
    """A writable copy of test_data/tiny; returns (data_root, data_dir)."""
    root = tmp_path / "data"
    shutil.copytree(f"{TEST_DATA}/tiny", root / "tiny")
    return root, root / "tiny"


def tiny_item_tokens():
    return [f"i{i}" for i in range(1, 31)]


def test_hook_attaches_modalities_lined_up_by_token(tmp_path, tiny_copy):
    root, data_dir = tiny_copy
    tokens = tiny_item_tokens()[::-1]  # file order differs from RecBole's id order on purpose
    text = np.arange(30 * 3, dtype=np.float32).reshape(30, 3)
    write_feature_file(feature_path(data_dir, "tiny", "text"), tokens, text)
    write_feature_file(feature_path(data_dir, "tiny", "image"), tokens[:20], np.ones((20, 2)))

    config = Config(
        "SASRec",
        "tiny",
        config_dict=tiny_config(
            tmp_path,
            data_path=str(root),
            modalities=["text", "image"],
            modality_dims={"text": 3, "image": 2},
            missing_feature_policy={"text": "error", "image": "zero"},
        ),
    )
    dataset = MultiModalSequentialDataset(config)
    item_tokens = dataset.item_tokens()
    assert dataset.item_features["text"].shape == (len(item_tokens), 3)
    for item_id in (1, 7, len(item_tokens) - 1):
        row = tokens.index(item_tokens[item_id])
        np.testing.assert_array_equal(dataset.item_features["text"][item_id].numpy(), text[row])
    image_missing = dataset.item_feature_missing["image"]
    assert int(image_missing[1:].sum()) == 10 and image_missing[0]

    train, _, _ = dataset.build()
    assert train.item_features is dataset.item_features  # built splits share the features


def test_hook_reports_a_listed_modality_without_file(tmp_path, tiny_copy):
    root, _ = tiny_copy
    config = Config(
        "SASRec", "tiny", config_dict=tiny_config(tmp_path, data_path=str(root), modalities=["image"])
    )
    with pytest.raises(ConfigError, match=r"modality 'image' .*tiny.image.npz does not exist"):
        MultiModalSequentialDataset(config)


def test_hook_attaches_semantic_ids_and_rejects_partial_files(tmp_path, tiny_copy):
    root, data_dir = tiny_copy
    tokens = tiny_item_tokens()
    codes = [[i % 4, i // 4, 0] for i in range(30)]
    path = semantic_id_path(data_dir, "tiny", "index")
    write_semantic_id_file(path, tokens, codes)
    config = Config("SASRec", "tiny", config_dict=tiny_config(tmp_path, data_path=str(root)))
    dataset = MultiModalSequentialDataset(config)
    ids = dataset.attach_semantic_ids(path)
    item_id = dataset.token2id(dataset.iid_field, "i6")
    assert ids[item_id].tolist() == codes[5] and ids[0].tolist() == [0, 0, 0]

    write_semantic_id_file(path, tokens[:-1], codes[:-1])
    with pytest.raises(DataError, match=r"no semantic ID for item 'i30'"):
        dataset.attach_semantic_ids(path)


def write_benchmark_dataset(root, name="bench", history=12):
    """Pre-split files whose histories are longer than MAX_ITEM_LIST_LENGTH."""
    folder = root / name
    folder.mkdir(parents=True)
    header = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    rows = {"train": [], "valid": [], "test": []}
    for user in range(12):
        items = [f"i{(user * 2 + k) % 30}" for k in range(history + 2)]
        for end in range(1, history):
            rows["train"].append(f"u{user}\t{' '.join(items[:end])}\t{items[end]}\n")
        rows["valid"].append(f"u{user}\t{' '.join(items[:history])}\t{items[history]}\n")
        rows["test"].append(f"u{user}\t{' '.join(items[: history + 1])}\t{items[history + 1]}\n")
    for split, lines in rows.items():
        (folder / f"{name}.{split}.inter").write_text(header + "".join(lines))
    (folder / f"{name}.yaml").write_text(
        "load_col:\n  inter: [user_id, item_id_list, item_id]\n"
        "benchmark_filename: [train, valid, test]\nalias_of_item_id: [item_id_list]\n"
        "MAX_ITEM_LIST_LENGTH: 5\n"
    )
    return folder


def test_benchmark_histories_keep_the_last_items(tmp_path):
    root = tmp_path / "data"
    write_benchmark_dataset(root)
    config = Config("SASRec", "bench", config_dict=tiny_config(tmp_path, data_path=str(root)))
    dataset = create_dataset(config)
    assert isinstance(dataset, SequentialDataset)
    _, _, test = dataset.build()
    assert test.inter_feat["item_id_list"].shape[1] == 5
    # user u0's test history i0..i12 keeps its last 5 items, i8..i12
    row = test.inter_feat[test.inter_feat["user_id"] == dataset.token2id("user_id", "u0")]
    history = dataset.id2token("item_id", row["item_id_list"][0].numpy())
    assert list(history) == ["i8", "i9", "i10", "i11", "i12"]

    result = run_recbole_bbq("SASRec", "bench", config_dict=tiny_config(tmp_path, data_path=str(root)))
    assert 0.0 <= result["test_result"]["ndcg@10"] <= 1.0


SCIENTIFIC_MM = f"{SHARED_DATA}/amazon_scientific_mm"


def test_scientific_mm_through_the_hook_matches_the_raw_files(tmp_path):
    require_shared("amazon_scientific_mm")
    from recbole_bbq.converters import unisrec

    unisrec.convert(SCIENTIFIC_MM, "Scientific", str(tmp_path / "data"))
    config = Config(
        "SASRec", "Scientific", config_dict=tiny_config(tmp_path, data_path=str(tmp_path / "data"))
    )
    assert config["modalities"] == ["text", "image"]
    dataset = MultiModalSequentialDataset(config)
    assert dataset.item_features["text"].shape == (1586, 512)
    assert dataset.item_features["image"].shape == (1586, 512)
    assert not dataset.item_feature_missing["text"][1:].any()

    raw = {
        m: np.fromfile(f"{SCIENTIFIC_MM}/Scientific.{suffix}", np.float32).reshape(-1, 512)
        for m, suffix in (("text", "feat1CLS"), ("image", "feat3CLS"))
    }
    index_of = dict(line.split() for line in open(f"{SCIENTIFIC_MM}/Scientific.item2index"))
    for item_id in range(1, dataset.item_num):
        token = dataset.id2token(dataset.iid_field, item_id)
        for modality in ("text", "image"):  # every row, not only a spot check
            np.testing.assert_array_equal(
                dataset.item_features[modality][item_id].numpy(), raw[modality][int(index_of[token])]
            )


def test_embedded_ml100k_gets_text_vectors_on_first_use(tmp_path, monkeypatch):
    """The real MiniLM path is covered in test_encoders.py; here a fast stand-in keeps this quick."""
    from recbole_bbq.data import text_encoder

    calls = []

    def fake_encode_texts(texts, **kwargs):
        calls.append(list(texts))
        return np.full((len(texts), 384), 0.05, dtype=np.float32)

    monkeypatch.setattr(text_encoder, "encode_texts", fake_encode_texts)
    root = tmp_path / "data"
    config = Config("SASRec", "ml-100k", config_dict=tiny_config(tmp_path, data_path=str(root)))
    assert config["modalities"] == ["text"] and config["modality_dims"] == {"text": 384}
    dataset = MultiModalSequentialDataset(config)
    assert (root / "ml-100k" / "ml-100k.text.npz").is_file()
    assert dataset.item_features["text"].shape == (1683, 384)
    assert len(calls) == 1 and calls[0][0] == "Toy Story (1995). Genres: Animation, Children's, Comedy"

    MultiModalSequentialDataset(config)  # cached: not encoded again
    assert len(calls) == 1
