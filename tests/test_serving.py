"""Serving a saved model: load it back, recommend for users and raw histories, add new items."""

import json
import os
import shutil

import numpy as np
import pytest
import torch

from recbole_bbq.catalogue import add_items, assign_dedup_codes
from recbole_bbq.checkpoint import load_checkpoint
from recbole_bbq.data.features import feature_path, read_feature_file, write_feature_file
from recbole_bbq.errors import ConfigError, DataError
from recbole_bbq.pipeline import prepare_semantic_ids
from recbole_bbq.quick_start import build_model, load_data_and_model
from recbole_bbq.recommend import read_histories, topk
from recbole_bbq.utils import get_trainer

from conftest import SMALL_BACKBONE, TEST_DATA, TINY_ITEMS, copy_tiny_with_features, tiny_config

ITEMS = TINY_ITEMS
NEW_ITEMS = ["n1", "n2", "n3"]


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    """tiny plus 16-d text and 12-d image vectors, and the new items' vectors beside them."""
    root = tmp_path_factory.mktemp("data")
    rng = copy_tiny_with_features(root, published=False)
    write_feature_file(root / "new.text.npz", NEW_ITEMS, rng.normal(size=(3, 16)))
    write_feature_file(root / "new.image.npz", NEW_ITEMS, rng.normal(size=(3, 12)))
    return root


def settings(root, saved_dir, **overrides):
    config = tiny_config(
        saved_dir,
        data_path=str(root),
        modalities=["text", "image"],
        behaviour={"epochs": 1},
        tokenizer={"epochs": 2, "codebook_size": 8, "latent_dim": 8, "hidden_dim": 16},
        rqvae={"epochs": 2, "codebook_size": 8, "latent_dim": 8, "hidden_dim": 16},
        beam_size=20,
        checkpoint_name="model",
        **SMALL_BACKBONE,
    )
    config.update(overrides)
    return config


def train(model_name, root, saved_dir, **overrides):
    """Train one epoch; return the in-memory model, its test data and the saved model file."""
    from recbole_bbq.config import Config

    config_dict = settings(root, saved_dir, **overrides)
    config_dict.update(prepare_semantic_ids(model_name, "tiny", config_dict=config_dict, show_progress=False))
    config = Config(model_name, "tiny", config_dict=config_dict)
    model, _, train_data, valid_data, test_data = build_model(config)
    trainer = get_trainer(config["MODEL_TYPE"], model_name)(config, model)
    trainer.fit(train_data, valid_data, saved=True, show_progress=False, verbose=False)
    return model.eval(), test_data, trainer.saved_model_file


@pytest.fixture(scope="module")
def trained(tiny_root, tmp_path_factory):
    """model name -> (in-memory model, test data, model file), trained once per module."""
    cache = {}

    def get(model_name, **overrides):
        key = (model_name, tuple(sorted(overrides.items())))
        if key not in cache:
            saved_dir = tmp_path_factory.mktemp(model_name)
            cache[key] = train(model_name, tiny_root, saved_dir, **overrides)
        return cache[key]

    return get


def histories_of(batch, dataset):
    """The item-token histories of a test batch."""
    seq, lengths = batch[dataset.item_id_list_field], batch[dataset.item_list_length_field]
    return [
        [str(dataset.id2token(dataset.iid_field, i)) for i in seq[r, : lengths[r]].tolist()]
        for r in range(len(seq))
    ]


@pytest.mark.parametrize("model_name", ["SASRec", "BBQRec", "TIGER"])
def test_load_and_recommend_reproduce_the_trained_models_ranking(trained, model_name):
    model, test_data, model_file = trained(model_name)
    batch = next(iter(test_data))[0]
    with torch.no_grad():
        scores = model.full_sort_predict(batch).view(len(batch), -1)
    scores[:, 0] = float("-inf")
    expected = scores.topk(10, dim=1)

    _, loaded, dataset, *_ = load_data_and_model(model_file)
    recommendations = topk(loaded, dataset, histories=histories_of(batch, dataset), k=10)
    for row, recommendation in enumerate(recommendations):
        finite = torch.isfinite(expected.values[row])
        items = dataset.id2token(dataset.iid_field, expected.indices[row][finite].numpy())
        assert recommendation.items == [str(t) for t in items]
        np.testing.assert_allclose(recommendation.scores, expected.values[row][finite].numpy(), rtol=1e-5)


def test_a_known_user_is_scored_from_all_its_known_items(trained):
    _, _, model_file = trained("SASRec")
    _, model, dataset, *_ = load_data_and_model(model_file)
    user = "u1"
    items = [
        line.split("\t")[1]
        for line in open(f"{TEST_DATA}/tiny/tiny.inter").read().splitlines()[1:]
        if line.split("\t")[0] == user
    ]
    by_user = topk(model, dataset, users=[user], k=5)[0]
    by_history = topk(model, dataset, histories=[items], k=5)[0]
    assert by_user.key == user and by_user.items == by_history.items and len(by_user.items) == 5


def test_bad_requests_are_clear_errors(trained, tmp_path):
    _, _, model_file = trained("SASRec")
    _, model, dataset, *_ = load_data_and_model(model_file)
    with pytest.raises(DataError, match="unknown user 'nobody'"):
        topk(model, dataset, users=["nobody"])
    with pytest.raises(DataError, match="history 1: unknown item 'zzz'"):
        topk(model, dataset, histories=[["i1"], ["i2", "zzz"]])
    with pytest.raises(DataError, match="history 0: needs a non-empty list"):
        topk(model, dataset, histories=[[]])
    bad = tmp_path / "h.jsonl"
    bad.write_text('{"id": "a", "history": ["i1"]}\n{not json}\n')
    with pytest.raises(DataError, match="h.jsonl, line 2: not JSON"):
        read_histories(str(bad))


def test_cli_recommends_json_lines(trained, tmp_path, capsys):
    from run_recbole_bbq import main

    _, _, model_file = trained("SASRec")
    histories = tmp_path / "h.jsonl"
    histories.write_text('{"id": "new-user", "history": ["i1", "i2"]}\n["i3"]\n')
    assert (
        main(["--recommend", f"--model_file={model_file}", "--users=u1", f"--histories={histories}", "--k=3"])
        == 0
    )
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [line.get("user", line.get("id")) for line in lines] == ["u1", "new-user", "2"]
    assert all(len(line["items"]) == 3 and len(line["scores"]) == 3 for line in lines)


def test_dedup_codes_take_the_lowest_free_code():
    existing = np.array([[1, 2, 0], [1, 2, 1], [3, 4, 0]])
    new = np.array([[1, 2], [5, 6], [1, 2], [3, 4]])
    np.testing.assert_array_equal(assign_dedup_codes(existing, new)[:, -1], [2, 0, 3, 1])


def new_features(root):
    return {"text": str(root / "new.text.npz"), "image": str(root / "new.image.npz")}


@pytest.mark.parametrize("model_name", ["BBQRec", "TIGER"])
def test_added_items_get_content_ids_and_keep_the_trained_weights(trained, tiny_root, tmp_path, model_name):
    _, _, model_file = (
        trained(model_name, score_mode="fused") if model_name == "BBQRec" else trained(model_name)
    )
    output = str(tmp_path / "extended.pth")
    add_items(model_file, new_features(tiny_root), output_file=output)
    _, before, old_dataset, *_ = load_data_and_model(model_file)
    _, after, dataset, *_ = load_data_and_model(output)
    new_ids = [dataset.field2token_id[dataset.iid_field][t] for t in NEW_ITEMS]
    assert new_ids == list(range(old_dataset.item_num, old_dataset.item_num + 3))
    codes = after.item_codes[1:].tolist()
    assert len({tuple(c) for c in codes}) == len(codes)  # IDs stay unique
    assert torch.equal(after.item_codes[: old_dataset.item_num], before.item_codes)
    assert after.vocab_sizes == before.vocab_sizes
    for name, value in before.state_dict().items():
        if value.shape == after.state_dict()[name].shape:
            assert torch.equal(value, after.state_dict()[name]), name
    if model_name == "BBQRec":
        assert torch.count_nonzero(after.item_id_embedding.weight[new_ids]) == 0  # z_ID of new items
        assert torch.count_nonzero(after.item_content[new_ids]) > 0  # quantized content
    # Forcing a new item's codes makes beam search generate it, and topk return it first.
    target = new_ids[1]
    for level, code in enumerate(after.item_codes[target].tolist()):
        after.backbone.heads[level].bias.data[code] += 1e4
    first = topk(after, dataset, histories=[["i1", "i2"], ["n1"]], k=5)
    assert all(recommendation.items[0] == NEW_ITEMS[1] for recommendation in first)


def test_items_can_be_added_twice_in_place(trained, tiny_root, tmp_path):
    _, _, model_file = trained("BBQRec")
    copy = str(tmp_path / "model.pth")
    shutil.copy(model_file, copy)
    add_items(copy, new_features(tiny_root))
    more = tmp_path / "more.text.npz"
    write_feature_file(more, ["n4"], np.ones((1, 16)))
    write_feature_file(tmp_path / "more.image.npz", ["n4"], np.ones((1, 12)))
    add_items(copy, {"text": str(more), "image": str(tmp_path / "more.image.npz")})
    _, model, dataset, *_ = load_data_and_model(copy)
    assert list(dataset.item_tokens()[-4:]) == NEW_ITEMS + ["n4"]
    assert model.item_codes.shape[0] == dataset.item_num


def bad_input_cases(root, tmp_path):
    rng = np.random.default_rng(1)
    existing = tmp_path / "existing.text.npz"
    write_feature_file(existing, ["i3"], rng.normal(size=(1, 16)))
    wrong_dim = tmp_path / "wrong.text.npz"
    write_feature_file(wrong_dim, NEW_ITEMS, rng.normal(size=(3, 5)))
    nan_file = tmp_path / "nan.text.npz"
    np.savez(
        nan_file,
        tokens=np.array(NEW_ITEMS),
        features=np.full((3, 16), np.nan, np.float32),
        missing=np.zeros(3, bool),
        meta=np.array("{}"),
    )
    image = str(root / "new.image.npz")
    return [
        ({"text": str(existing), "image": image}, "different items|already in the model's catalogue"),
        ({"text": str(wrong_dim), "image": image}, "dimension 5, the model's have 16"),
        ({"text": str(nan_file), "image": image}, "row 0 \\(item 'n1'\\) has non-finite values"),
        ({"text": str(root / "new.text.npz")}, "no features for modality 'image'"),
    ]


def test_bad_new_items_are_clear_errors_and_change_nothing(trained, tiny_root, tmp_path):
    _, _, model_file = trained("BBQRec")
    folder = tmp_path / "saved"
    folder.mkdir()
    copy = folder / "model.pth"
    shutil.copy(model_file, copy)
    before = copy.read_bytes()
    for features, message in bad_input_cases(tiny_root, tmp_path):
        with pytest.raises(DataError, match=message):
            add_items(str(copy), features)
        assert copy.read_bytes() == before and os.listdir(folder) == ["model.pth"]


def test_id_only_models_cannot_take_new_items(trained, tiny_root):
    _, _, model_file = trained("SASRec")
    with pytest.raises(ConfigError, match="learned ID embeddings"):
        add_items(model_file, new_features(tiny_root))


def test_published_codes_cannot_encode_new_items(trained, tiny_root, tmp_path):
    from recbole_bbq.data.semantic_ids import semantic_id_path, write_semantic_id_file

    codes = np.array([[i % 3, (i // 3) % 4, i // 12] for i in range(30)])
    write_semantic_id_file(semantic_id_path(tiny_root / "tiny", "tiny", "published"), ITEMS, codes)
    _, _, model_file = trained("TIGER", semantic_ids_from="published")
    with pytest.raises(DataError, match="semantic_ids_from"):
        add_items(model_file, new_features(tiny_root))
    assert load_checkpoint(model_file, "cpu")["config"]["catalogue_file"] is None


def test_collisions_past_the_trained_dedup_codes_grow_the_code_tables(trained, tiny_root, tmp_path):
    """Three copies of a trained item's vectors share its codes: dedup codes past the trained ones."""
    from recbole_bbq.data.features import read_feature_file

    _, _, model_file = trained("TIGER")
    _, before, dataset, *_ = load_data_and_model(model_file)
    copies = {}
    for modality in ("text", "image"):
        source = read_feature_file(feature_path(tiny_root / "tiny", "tiny", modality))
        copies[modality] = str(tmp_path / f"copies.{modality}.npz")
        write_feature_file(copies[modality], ["c1", "c2", "c3"], np.repeat(source.features[:1], 3, axis=0))
    output = str(tmp_path / "grown.pth")
    add_items(model_file, copies, output_file=output)
    _, after, dataset, *_ = load_data_and_model(output)
    ids = [dataset.field2token_id[dataset.iid_field][t] for t in ("c1", "c2", "c3")]
    original = dataset.field2token_id[dataset.iid_field][ITEMS[0]]
    assert (after.item_codes[ids, :-1] == after.item_codes[original, :-1]).all()
    assert (
        after.vocab_sizes[-1] > before.vocab_sizes[-1] and after.vocab_sizes[:-1] == before.vocab_sizes[:-1]
    )
    old_head, new_head = before.backbone.heads[-1], after.backbone.heads[-1]
    size = before.vocab_sizes[-1]
    assert torch.equal(new_head.weight[:size], old_head.weight)
    assert torch.equal(new_head.bias[size:], old_head.bias.min().repeat(len(new_head.bias) - size))
    padding = before.backbone.token_embeddings[-1].weight[-1]
    assert torch.equal(after.backbone.token_embeddings[-1].weight[-1], padding)  # padding row stays last
    for level, code in enumerate(after.item_codes[ids[-1]].tolist()):
        after.backbone.heads[level].bias.data[code] += 1e4
    assert topk(after, dataset, histories=[["i1", "i2"]], k=3)[0].items[0] == "c3"


def test_cli_adds_items(trained, tiny_root, tmp_path, capsys):
    from run_recbole_bbq import main

    _, _, model_file = trained("TIGER")
    output = tmp_path / "added.pth"
    features = f"--features=text={tiny_root / 'new.text.npz'},image={tiny_root / 'new.image.npz'}"
    assert main(["--add_items", f"--model_file={model_file}", features, f"--output_file={output}"]) == 0
    assert f"model with the added items: {output}" in capsys.readouterr().out
    _, _, dataset, *_ = load_data_and_model(str(output))
    assert list(dataset.item_tokens()[-3:]) == NEW_ITEMS
    assert main(["--add_items", f"--model_file={model_file}", "--features=text"]) == 2
    assert "--features must be modality=path pairs" in capsys.readouterr().err


def test_cli_checkpoint_name_names_the_main_models_file_only(tiny_root, tmp_path, capsys):
    """--checkpoint_name reaches every Config of the run through sys.argv; the behaviour SASRec
    must not save (and BBQRec then resume) a training state under that name."""
    import yaml

    from run_recbole_bbq import main

    config = settings(tiny_root, tmp_path)
    config.pop("checkpoint_name")
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["--model=BBQRec", "--dataset=tiny", f"--config_files={path}", "--checkpoint_name=cli"]) == 0
    model_file = tmp_path / "saved" / "cli-best.pth"
    assert f"model file: {model_file}" in capsys.readouterr().out
    assert load_checkpoint(str(model_file), "cpu")["config"]["model"] == "BBQRec"


def test_new_items_can_start_from_the_trained_items_mean_z_id(trained, tiny_root, tmp_path):
    _, _, model_file = trained("BBQRec")
    output = str(tmp_path / "mean.pth")
    add_items(model_file, new_features(tiny_root), output_file=output, id_rows="mean")
    _, before, old_dataset, *_ = load_data_and_model(model_file)
    _, after, _, *_ = load_data_and_model(output)
    trained_rows = before.item_id_embedding.weight[1:]
    new_rows = after.item_id_embedding.weight[old_dataset.item_num :]
    torch.testing.assert_close(new_rows, trained_rows.mean(dim=0).expand_as(new_rows))
    with pytest.raises(ConfigError, match="id_rows must be one of"):
        add_items(model_file, new_features(tiny_root), output_file=output, id_rows="random")


def test_new_items_can_take_the_z_id_of_their_nearest_trained_item(trained, tiny_root, tmp_path):
    """id_rows='nearest': a new item that copies a trained item's vectors (plus noise) gets its z_ID."""
    _, _, model_file = trained("BBQRec")
    copied = ["i4", "i17", "i29"]
    rng = np.random.default_rng(1)
    features = {}
    for modality in ("text", "image"):
        trained_file = read_feature_file(feature_path(tiny_root / "tiny", "tiny", modality))
        row_of = {str(t): row for row, t in enumerate(trained_file.tokens)}
        vectors = trained_file.features[[row_of[t] for t in copied]]
        features[modality] = str(tmp_path / f"near.{modality}.npz")
        write_feature_file(features[modality], NEW_ITEMS, vectors + 0.01 * rng.normal(size=vectors.shape))
    output = str(tmp_path / "nearest.pth")
    add_items(model_file, features, output_file=output, id_rows="nearest")
    _, before, old_dataset, *_ = load_data_and_model(model_file)
    _, after, _, *_ = load_data_and_model(output)
    ids = [old_dataset.field2token_id[old_dataset.iid_field][t] for t in copied]
    new_rows = after.item_id_embedding.weight[old_dataset.item_num :]
    torch.testing.assert_close(new_rows, before.item_id_embedding.weight[ids])
