"""Feature and semantic-ID files: round trip, alignment and every bad-input error."""

import os

import numpy as np
import pytest

from recbole_bbq.data.features import (
    align_to_items,
    read_feature_file,
    register_modality,
    write_feature_file,
)
from recbole_bbq.data.semantic_ids import (
    align_codes,
    parse_code,
    read_semantic_id_file,
    write_semantic_id_file,
)
from recbole_bbq.errors import DataError

ITEMS = ["[PAD]", "i1", "i2", "i3"]


def features(n=3, dim=4, seed=0):
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def leftovers(folder):
    return sorted(os.listdir(folder))


def test_round_trip_and_alignment_by_token(tmp_path):
    path = tmp_path / "d.text.npz"
    matrix = features()
    write_feature_file(path, ["i3", "i1", "i2"], matrix, meta={"modality": "text"})
    loaded = read_feature_file(path)
    assert loaded.meta == {"modality": "text"} and loaded.dim == 4
    aligned, missing = align_to_items(loaded, ITEMS, expected_dim=4)
    assert aligned.shape == (4, 4) and not aligned[0].any()
    np.testing.assert_array_equal(aligned[1].numpy(), matrix[1])  # i1 is row 1 of the file
    np.testing.assert_array_equal(aligned[3].numpy(), matrix[0])  # i3 is row 0
    assert missing.tolist() == [True, False, False, False]
    assert leftovers(tmp_path) == ["d.text.npz"]


@pytest.mark.parametrize(
    "tokens, matrix, message",
    [
        (["i1", "i2", "i3"], np.array([[0, 1], [np.nan, 1], [1, 1]]), r"row 1 \(item 'i2'\).*non-finite"),
        (["i1", "i2", "i1"], features(dim=2), r"duplicate item token 'i1' at rows \[0, 2\]"),
        (["i1", "i2"], features(dim=2), r"2 tokens.*3 feature rows"),
    ],
)
def test_bad_matrix_is_rejected_and_nothing_is_written(tmp_path, tokens, matrix, message):
    path = tmp_path / "d.image.npz"
    with pytest.raises(DataError, match=message) as error:
        write_feature_file(path, tokens, matrix)
    assert str(path) in str(error.value)
    assert leftovers(tmp_path) == []


def test_missing_row_errors_or_zero_fills(tmp_path):
    path = tmp_path / "d.image.npz"
    write_feature_file(path, ["i1", "i3"], features(n=2))
    with pytest.raises(DataError, match=r"d.image.npz: no row for item 'i2' \(internal id 2\)"):
        align_to_items(read_feature_file(path), ITEMS)
    aligned, missing = align_to_items(read_feature_file(path), ITEMS, missing_policy="zero")
    assert missing.tolist() == [True, False, True, False] and not aligned[2].any()


def test_missing_flags_in_the_file_are_kept(tmp_path):
    path = tmp_path / "d.image.npz"
    write_feature_file(path, ["i1", "i2", "i3"], features(), missing=[False, True, False])
    _, missing = align_to_items(read_feature_file(path), ITEMS)
    assert missing.tolist() == [True, False, True, False]


def test_wrong_dimension_names_the_file(tmp_path):
    path = tmp_path / "d.text.npz"
    write_feature_file(path, ["i1", "i2", "i3"], features(dim=8))
    with pytest.raises(DataError, match=r"d.text.npz: dimension 8, but the config expects 4"):
        align_to_items(read_feature_file(path), ITEMS, expected_dim=4)


def test_tokens_of_another_dataset_are_rejected(tmp_path):
    path = tmp_path / "d.text.npz"
    write_feature_file(path, ["B00X", "B00Y", "B00Z"], features())
    with pytest.raises(DataError, match=r"none of its 3 tokens matches the dataset's items"):
        align_to_items(read_feature_file(path), ITEMS, missing_policy="zero")


def test_truncated_or_foreign_files_are_clear_errors(tmp_path):
    path = tmp_path / "d.text.npz"
    write_feature_file(path, ["i1", "i2", "i3"], features())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"d.text.npz: unreadable or truncated"):
        read_feature_file(path)
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(DataError, match=r"other.npz: not a recbole_bbq feature file"):
        read_feature_file(tmp_path / "other.npz")
    with pytest.raises(DataError, match=r"absent.npz: feature file not found"):
        read_feature_file(tmp_path / "absent.npz")


def test_register_modality_merges_into_dataset_yaml(tmp_path):
    import yaml

    (tmp_path / "d.yaml").write_text("MAX_ITEM_LIST_LENGTH: 20\nmodalities: [text]\n")
    register_modality(str(tmp_path), "d", "image", 512)
    register_modality(str(tmp_path), "d", "text", 384)
    config = yaml.safe_load((tmp_path / "d.yaml").read_text())
    assert config == {
        "MAX_ITEM_LIST_LENGTH": 20,
        "modalities": ["text", "image"],
        "modality_dims": {"image": 512, "text": 384},
    }


def test_semantic_ids_round_trip_and_validation(tmp_path):
    assert [parse_code(c) for c in ("<A_154>", "<d_3>", "17")] == [154, 3, 17]
    path = tmp_path / "d.index.sid.npz"
    write_semantic_id_file(path, ["i1", "i2", "i3"], [[1, 2, 0], [1, 2, 1], [3, 0, 0]], {"source": "x"})
    tokens, codes, meta = read_semantic_id_file(path)
    aligned = align_codes(path, tokens, codes, ITEMS)
    assert aligned.tolist() == [[0, 0, 0], [1, 2, 0], [1, 2, 1], [3, 0, 0]] and meta == {"source": "x"}

    with pytest.raises(DataError, match=r"no semantic ID for item 'i4'"):
        align_codes(path, tokens, codes, ITEMS + ["i4"])
    with pytest.raises(DataError, match=r"several items share the semantic ID \[1, 2\]"):
        align_codes(path, tokens, codes[:, :2], ITEMS)
    with pytest.raises(DataError, match=r"negative code at row 0"):
        write_semantic_id_file(tmp_path / "bad.sid.npz", ["i1"], [[-1, 0]])
    assert not (tmp_path / "bad.sid.npz").exists()
