"""Bad input and faults: every case of the fault probe, one test (or parametrised test) each.

Each test asserts the exit code where a command runs, that the message names the offending file,
key, value or line, and that a refused input leaves nothing new in the dataset or output folder.
Every test builds its own small input in ``tmp_path``; none needs ../shared.

Rows of the probe, the case, then its tests:

1. crafted, truncated, foreign checkpoint files: ``test_*checkpoint*``, ``test_trust_opt_in_*``
2. ``--seed``, abbreviated options: ``test_seed_flag_sets_the_single_run_seed``,
   ``test_abbreviated_flag_is_refused``
3. image cache after a change of missing-image policy:
   ``test_image_cache_key_includes_missing_policy``
4. empty history in a pre-split ``.inter``: ``test_empty_history_rejected_by_converter``,
   ``..._by_hook``
5. ``--stage`` for a model without that stage, or unknown: ``test_stage_for_*``,
   ``test_stage_runs_the_models_own_tokenizer``
6. ``epochs: -1``: ``test_negative_epochs``
7. ``sim_buckets`` out of range, ``learning_rate: abc``: ``test_sim_buckets_out_of_range``,
   ``test_learning_rate_not_a_number``
8. ``score_mode``/``sim_source``/``beam_size`` checked late:
   ``test_score_mode_checked_before_any_stage``
9. malformed or missing YAML: ``test_malformed_yaml_names_the_file``,
   ``test_missing_yaml_names_the_file``
10. bad timestamp, column type, header-only file, missing fields:
    ``test_non_numeric_timestamp_*``, ``test_bad_column_type_*``, ``test_header_only_inter_file``,
    ``test_row_with_missing_fields_is_refused``
11. non-UTF-8 input: ``test_non_utf8_converter_input_names_offset``,
    ``test_non_utf8_item_text_names_offset``
12. empty item text: ``test_empty_item_text_counted_as_missing``
13. ``semantic_ids_file`` in a YAML file: ``test_yaml_semantic_ids_file_is_not_replaced``
14. a kill during an artifact or plot write: ``test_orphaned_temp_files_removed_and_plot_regenerated``
15. two runs start at once in a fresh folder: ``test_concurrent_runs_share_log_folder``
16. artifacts of changed inputs: ``test_prune_cache_dry_run_then_remove``
17. sequential models with BPR or CE losses: ``test_sequential_bpr_and_ce_losses_train``,
    ``test_sequential_loss_without_matching_sampling_is_refused``

Unknown keys (``test_unknown_key_suggests_a_known_one``) and the shipped defaults
(``test_shipped_defaults_pass_the_rules``) complete the config checks.
"""

import collections
import gzip
import json
import math
import os
import pickle
import random
import shutil
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import scipy.sparse
import torch
import yaml

import run_recbole_bbq
from recbole_bbq import quick_start
from recbole_bbq.checkpoint import pack_other_parameter, unpack_other_parameter
from recbole_bbq.config import Config
from recbole_bbq.converters import amazon, encode_images, encode_text, lcrec, unisrec
from recbole_bbq.converters import common as _common
from recbole_bbq.data import encoding, text_encoder
from recbole_bbq.data.features import feature_path, read_feature_file, write_feature_file
from recbole_bbq.data.semantic_ids import semantic_id_path, write_semantic_id_file
from recbole_bbq.errors import CheckpointError, ConfigError, DataError, RecBoleBBQError
from recbole_bbq.quick_start import objective_function
from recbole_bbq.trainer import (
    RecBoleTrainer,
    Trainer,
    load_checkpoint,
)
from recbole_bbq.utils import create_dataset
from recbole_bbq.validation import RQVAE_RULES, RULES, TOKENIZER_RULES

from conftest import TEST_DATA, copy_tiny_with_features, tiny_config

# -----------------------------------------------------------------------------------------------
# Checkpoints (row 1)
# -----------------------------------------------------------------------------------------------


class _CreatesMarker:
    """Unpickling this object calls ``open(marker, "w")``: the file appears if any code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def sasrec(tmp_path, **overrides):
    """A SASRec trainer on the tiny dataset, with its data loaders."""
    from recbole_bbq.config import Config
    from recbole_bbq.utils import create_dataset, data_preparation, get_model

    config = Config("SASRec", "tiny", config_dict=tiny_config(tmp_path, **overrides))
    train, valid, test = data_preparation(config, create_dataset(config))
    torch.manual_seed(0)
    return Trainer(config, get_model("SASRec")(config, train._dataset)), train, valid, test


def dataset_files():
    return sorted(os.listdir(os.path.join(TEST_DATA, "tiny")))


def crafted_checkpoint(path, marker):
    torch.save({"state_dict": {}, "payload": _CreatesMarker(marker)}, path)


def test_crafted_checkpoint_does_not_execute(tmp_path):
    crafted, marker = tmp_path / "crafted.pth", tmp_path / "code-ran"
    crafted_checkpoint(crafted, marker)
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(crafted, "cpu")
    assert str(crafted) in str(refused.value) and "trust_checkpoint_files" in str(refused.value)
    assert not marker.exists()

    # The trainer's two readers refuse it too: the best-checkpoint reload and the resumable state.
    trainer, train, valid, test = sasrec(tmp_path, checkpoint_name="cell")
    with pytest.raises(CheckpointError, match="trust_checkpoint_files"):
        trainer.evaluate(test, load_best_model=True, model_file=str(crafted))
    crafted_checkpoint(tmp_path / "saved" / "cell-last.pth", marker)
    with pytest.raises(CheckpointError, match="cell-last.pth"):
        trainer.fit(train, valid, saved=True, show_progress=False)
    assert not marker.exists()

    # The payload is live: the explicit opt-in unpickles it (hence "only for files you trust").
    load_checkpoint(crafted, "cpu", trust=True)
    assert marker.exists()


def test_truncated_checkpoint_names_the_file(tmp_path):
    trainer, train, valid, _ = sasrec(tmp_path, checkpoint_name="cell")
    trainer.fit(train, valid, saved=True, show_progress=False)
    for path in (trainer.saved_model_file, trainer._state_file()):
        with open(path, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2])  # a write cut short
    with pytest.raises(CheckpointError, match="truncated") as best:
        load_checkpoint(trainer.saved_model_file, "cpu")
    assert str(trainer.saved_model_file) in str(best.value)

    resumed, train, valid, _ = sasrec(tmp_path, checkpoint_name="cell")
    with pytest.raises(CheckpointError) as last:
        resumed.fit(train, valid, saved=True, show_progress=False)
    assert trainer._state_file() in str(last.value) and "Delete it" in str(last.value)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol 4")
@pytest.mark.parametrize(
    "content",
    [b"", b"item_id:token\titem_title:token_seq\n", pickle.dumps({"state_dict": {}}, protocol=4)],
    ids=["empty", "text", "plain-pickle"],
)
def test_foreign_checkpoint_names_the_file(tmp_path, content):
    path = tmp_path / "foreign.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path, "cpu")
    assert str(path) in str(error.value)
    assert isinstance(error.value, RecBoleBBQError)  # the CLI prints it as one line


def test_missing_checkpoint_names_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="missing.pth"):
        load_checkpoint(tmp_path / "missing.pth", "cpu")


def test_checkpoint_round_trip_loads_weights_only(tmp_path):
    from recbole_bbq.quick_start import run

    before = dataset_files()
    result = run("SASRec", "tiny", config_dict=tiny_config(tmp_path))
    assert result["test_result"]  # tested after reloading the best checkpoint (weights_only)

    (name,) = os.listdir(tmp_path / "saved")  # one checkpoint, no temporary file left
    state = torch.load(tmp_path / "saved" / name, map_location="cpu", weights_only=True)
    assert state["config"]["model"] == "SASRec" and state["config"]["device"] == "cpu"
    json.dumps(state["config"])  # plain data only
    assert type(state["best_valid_score"]) is float and state["epoch"] == 0
    assert state["state_dict"] and state["optimizer"]["state"]
    assert dataset_files() == before


def test_resume_state_loads_weights_only(tmp_path):
    trainer, train, valid, _ = sasrec(tmp_path, checkpoint_name="cell")
    trainer.fit(train, valid, saved=True, show_progress=False)
    state = torch.load(trainer._state_file(), map_location="cpu", weights_only=True)
    assert type(state["best_valid_score"]) is float and state["stop_reason"] == "epoch_limit"
    assert all(type(v) is float for v in state["best_valid_result"].values())
    saved_rng = state["rng"]

    # A finished run found again restores the random states it stored, rebuilt from plain data.
    random.random(), np.random.rand(), torch.rand(1)
    again, train, valid, _ = sasrec(tmp_path, checkpoint_name="cell")
    again.fit(train, valid, saved=True, show_progress=False)
    assert random.getstate() == saved_rng["python"]
    assert np.random.get_state()[1].tolist() == saved_rng["numpy"]["key"]
    assert np.random.get_state()[2] == saved_rng["numpy"]["pos"]
    assert torch.equal(torch.get_rng_state(), saved_rng["torch"])
    assert again.best_valid_score == trainer.best_valid_score


@pytest.mark.filterwarnings("ignore:Detected pickle protocol 4")  # RecBole saves with protocol 4
def test_trust_opt_in_loads_legacy_pickle(tmp_path):
    trainer, _, _, test = sasrec(tmp_path)
    legacy = str(tmp_path / "legacy.pth")
    RecBoleTrainer._save_checkpoint(trainer, 0, verbose=False, saved_model_file=legacy)  # pickles Config

    with pytest.raises(CheckpointError) as refused:
        trainer.evaluate(test, load_best_model=True, model_file=legacy)
    assert legacy in str(refused.value) and "trust_checkpoint_files: true" in str(refused.value)

    trusting, _, _, test = sasrec(tmp_path, trust_checkpoint_files=True)
    torch.nn.init.zeros_(next(trusting.model.parameters()))
    trusting.evaluate(test, load_best_model=True, model_file=legacy)
    for name, weight in trainer.model.state_dict().items():
        assert torch.equal(weight, trusting.model.state_dict()[name]), name


def test_trust_opt_in_resumes_legacy_train_state(tmp_path):
    """A ``-last.pth`` of an older version (numpy random state, numpy scores) resumes when trusted."""
    trainer, train, valid, _ = sasrec(tmp_path, checkpoint_name="cell")
    trainer.fit(train, valid, saved=True, show_progress=False)
    path = trainer._state_file()
    state = torch.load(path, weights_only=True)
    state["rng"]["numpy"] = np.random.get_state()
    state["best_valid_score"] = np.float64(state["best_valid_score"])
    torch.save(state, path)

    refused, train, valid, _ = sasrec(tmp_path, checkpoint_name="cell")
    with pytest.raises(CheckpointError, match="trust_checkpoint_files"):
        refused.fit(train, valid, saved=True, show_progress=False)
    trusting, train, valid, _ = sasrec(tmp_path, checkpoint_name="cell", trust_checkpoint_files=True)
    assert trusting.fit(train, valid, saved=True, show_progress=False)[0] == trainer.best_valid_score
    assert np.array_equal(np.random.get_state()[1], state["rng"]["numpy"][1])


def test_other_parameter_arrays_round_trip_weights_only(tmp_path):
    """RecBole models keep numpy arrays and scipy matrices beside their weights (EASE, ItemKNN)."""
    other = {
        "item_similarity": np.arange(6, dtype=np.float32).reshape(2, 3),
        "interaction_matrix": scipy.sparse.csr_matrix(np.eye(3, dtype=np.float32)),
        "item_cnt": torch.ones(3),
        "ripple_set": collections.defaultdict(list, {np.int64(1): [(torch.zeros(2), [1, 2])]}),
        "max_cnt": None,
        "embedding_layer": torch.nn.Linear(2, 2),  # a submodule: saved with the state dict
    }
    torch.save(pack_other_parameter(other), tmp_path / "other.pth")
    loaded = unpack_other_parameter(torch.load(tmp_path / "other.pth", weights_only=True))
    assert set(loaded) == set(other) - {"embedding_layer"}
    assert np.array_equal(loaded["item_similarity"], other["item_similarity"])
    assert loaded["item_similarity"].dtype == np.float32
    assert loaded["interaction_matrix"].format == "csr"
    assert (loaded["interaction_matrix"] != other["interaction_matrix"]).nnz == 0
    assert torch.equal(loaded["item_cnt"], other["item_cnt"]) and loaded["max_cnt"] is None
    assert loaded["ripple_set"][1][0][1] == [1, 2]


def test_unsupported_other_parameter_is_refused_when_saving():
    with pytest.raises(CheckpointError, match="'matcher'"):
        pack_other_parameter({"matcher": object()})


# -----------------------------------------------------------------------------------------------
# Configuration and command line (rows 2, 5-9, 13, 17)
# -----------------------------------------------------------------------------------------------


SMALL_TOKENIZER = "{'epochs': 2, 'codebook_size': 8, 'latent_dim': 8, 'hidden_dim': 16}"


@pytest.fixture
def data_root(tmp_path):
    """A private copy of ``tiny`` plus a 16-d text feature file and a published code file."""
    root = tmp_path / "data"
    copy_tiny_with_features(root, modalities=("text",))
    return root


def files_below(folder):
    """Every file below ``folder``, relative to it."""
    return sorted(
        os.path.relpath(os.path.join(d, f), folder) for d, _, files in os.walk(folder) for f in files
    )


def run_cli(capsys, tmp_path, data_root, *args, stdout=None):
    """``main`` on the tiny dataset; returns ``(exit code, stderr, new files in the dataset folder)``
    and appends what it printed to ``stdout`` (a list) when given."""
    before = files_below(data_root)
    base = [
        "--dataset=tiny",
        f"--data_path={data_root}",
        f"--checkpoint_dir={tmp_path / 'saved'}",
        "--show_progress=False",
        "--state=ERROR",
        "--train_batch_size=64",
    ]
    code = run_recbole_bbq.main([*base, *args])
    new_files = sorted(set(files_below(data_root)) - set(before))
    captured = capsys.readouterr()
    if stdout is not None:
        stdout.append(captured.out)
    return code, captured.err, new_files


def user_yaml(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return str(path)


@pytest.fixture
def captured_runs(monkeypatch):
    """Replace training by a stand-in that records each run's config and attaches its dataset."""
    from recbole_bbq.utils import create_dataset

    configs = []

    def fake_train_and_test(config, saved=True, verbose=True):
        configs.append(config)
        create_dataset(config)  # attaches the semantic-ID file for the generative models
        return {
            "best_valid_score": 0.0,
            "valid_score_bigger": True,
            "best_valid_result": {},
            "test_result": {},
        }

    monkeypatch.setattr(quick_start, "_train_and_test", fake_train_and_test)
    return configs


def test_seed_flag_sets_the_single_run_seed(capsys, tmp_path, data_root, captured_runs):
    code, err, new_files = run_cli(capsys, tmp_path, data_root, "--model=SASRec", "--seed=2021")
    assert code == 0, err
    assert [config["seed"] for config in captured_runs] == [2021]
    assert not (tmp_path / "results").exists()  # one run, not a comparison
    assert new_files == []


def test_abbreviated_flag_is_refused(capsys, tmp_path, data_root, captured_runs):
    code, err, new_files = run_cli(capsys, tmp_path, data_root, "--model=SASRec", "--see=5")
    assert code == 2
    assert "unknown config key 'see' (from the command line)" in err and "'seed'" in err
    assert captured_runs == [] and not (tmp_path / "results").exists()  # no run, no comparison
    assert new_files == []


def test_stage_for_model_without_tokenizer(capsys, tmp_path, data_root):
    code, err, new_files = run_cli(capsys, tmp_path, data_root, "--model=SASRec", "--stage=tokenize")
    assert code == 2
    assert "SASRec has no 'tokenize' stage" in err
    assert new_files == []

    code, err, new_files = run_cli(capsys, tmp_path, data_root, "--model=TIGER", "--stage=behavior")
    assert code == 2
    assert "TIGER has no 'behaviour' stage; its stages are: features, tokenize" in err  # alias
    assert new_files == []


def test_stage_runs_the_models_own_tokenizer(capsys, tmp_path, data_root):
    rqvae = "--rqvae={'epochs': 2, 'codebook_size': 8, 'latent_dim': 8, 'hidden_dim': 16}"
    printed = []
    code, err, new_files = run_cli(
        capsys, tmp_path, data_root, "--model=TIGER", "--stage=tokenize", rqvae, stdout=printed
    )
    assert code == 0, err
    # The semantic IDs and their fitted RQ-VAE only: no BBQ artifact, no behaviour vectors.
    assert [name.split(".", 2)[2] for name in sorted(new_files)] == ["sid.npz", "tokenizer.pth"]
    assert all(name.startswith("tiny/tiny.tiger-") for name in new_files)
    assert (
        f"semantic IDs: {data_root / sorted(new_files)[0]}" in printed[0] and "collision_rate" in printed[0]
    )


def test_stage_for_unknown_model(capsys, tmp_path, data_root):
    code, err, new_files = run_cli(capsys, tmp_path, data_root, "--model=TIGR", "--stage=tokenize")
    assert code == 2
    assert "Unknown model 'TIGR' (did you mean 'TIGER'" in err
    assert new_files == []

    code, err, new_files = run_cli(capsys, tmp_path, data_root, "--model=NoSuchModel", "--stage=tokenize")
    assert code == 2 and "Unknown model 'NoSuchModel'" in err and "SASRec" in err
    assert new_files == []


def test_negative_epochs(capsys, tmp_path, data_root, captured_runs):
    config_file = user_yaml(tmp_path, "budget.yaml", {"epochs": -1})
    code, err, new_files = run_cli(
        capsys, tmp_path, data_root, "--model=SASRec", f"--config_files={config_file}"
    )
    assert code == 2
    assert f"epochs must be an integer >= 1, got -1 (from file {config_file})" in err
    assert captured_runs == [] and new_files == []


@pytest.mark.parametrize("buckets", [-1, 0])
def test_sim_buckets_out_of_range(capsys, tmp_path, data_root, buckets):
    code, err, new_files = run_cli(
        capsys, tmp_path, data_root, "--model=BBQRec", "--modalities=['text']", f"--sim_buckets={buckets}"
    )
    assert code == 2
    assert f"sim_buckets must be an integer >= 1, got {buckets} (from the command line)" in err
    assert new_files == []  # no behaviour vectors, no tokenizer artifact


def test_learning_rate_not_a_number(capsys, tmp_path, data_root, captured_runs):
    code, err, new_files = run_cli(capsys, tmp_path, data_root, "--model=SASRec", "--learning_rate=abc")
    assert code == 2
    assert "learning_rate must be a number > 0, got 'abc' (from the command line)" in err
    assert captured_runs == [] and new_files == []


@pytest.mark.parametrize(
    "option, message",
    [
        ("--score_mode=foo", "score_mode must be one of 'beam', 'dense', 'fused', 'interpolate', got 'foo'"),
        ("--sim_source=bar", "sim_source must be 'cosine' or 'codes', got 'bar'"),
        ("--beam_size=5", "beam_size (5) must be at least the largest topk (20)"),
    ],
)
def test_score_mode_checked_before_any_stage(capsys, tmp_path, data_root, option, message):
    """These used to fail only after the behaviour and tokenizer stages had run."""
    code, err, new_files = run_cli(
        capsys,
        tmp_path,
        data_root,
        "--model=BBQRec",
        "--modalities=['text']",
        "--behaviour={'epochs': 1}",
        f"--tokenizer={SMALL_TOKENIZER}",
        option,
    )
    assert code == 2
    assert message in err and "the command line" in err
    assert new_files == []


def test_malformed_yaml_names_the_file(capsys, tmp_path, data_root):
    config_file = user_yaml(tmp_path, "broken.yaml", "epochs: 1\nmodalities: [text\nlearning_rate: 0.01\n")
    code, err, new_files = run_cli(
        capsys, tmp_path, data_root, "--model=SASRec", f"--config_files={config_file}"
    )
    assert code == 2
    assert f"config file {config_file} is not valid YAML" in err and "line 3" in err
    assert "Traceback" not in err and new_files == []


def test_missing_yaml_names_the_file(capsys, tmp_path, data_root):
    missing = str(tmp_path / "absent.yaml")
    for models in (["--model=SASRec"], ["--model=SASRec,GRU4Rec", "--seeds=1"]):  # single run, comparison
        code, err, new_files = run_cli(capsys, tmp_path, data_root, *models, f"--config_files={missing}")
        assert code == 2
        assert f"config file {missing}: cannot read it (No such file or directory)" in err
        assert new_files == []
    assert not (tmp_path / "results").exists()


def test_yaml_semantic_ids_file_is_not_replaced(capsys, tmp_path, data_root, captured_runs):
    published = semantic_id_path(data_root / "tiny", "tiny", "published")
    config_file = user_yaml(tmp_path, "codes.yaml", {"semantic_ids_file": str(published)})
    code, err, new_files = run_cli(
        capsys, tmp_path, data_root, "--model=TIGER", f"--config_files={config_file}"
    )
    assert code == 0, err
    assert [config["semantic_ids_file"] for config in captured_runs] == [str(published)]
    assert new_files == []  # no RQ-VAE artifact built in its place

    stale = user_yaml(
        tmp_path, "stale.yaml", {"semantic_ids_file": str(published), "semantic_ids_key": "0" * 64}
    )
    code, err, new_files = run_cli(capsys, tmp_path, data_root, "--model=TIGER", f"--config_files={stale}")
    assert code == 2
    assert f"{published}: stale artifact" in err
    assert new_files == []


def test_unknown_key_suggests_a_known_one(capsys, tmp_path, data_root):
    typo = user_yaml(tmp_path, "typo.yaml", {"sim_bucket": 4})
    code, err, new_files = run_cli(capsys, tmp_path, data_root, "--model=BBQRec", f"--config_files={typo}")
    assert code == 2
    assert f"unknown config key 'sim_bucket' (from file {typo}): did you mean 'sim_buckets'" in err
    assert new_files == []

    nested = user_yaml(tmp_path, "nested.yaml", {"tokenizer": {"levls": 2}})
    code, err, new_files = run_cli(capsys, tmp_path, data_root, "--model=BBQRec", f"--config_files={nested}")
    assert code == 2
    assert (
        f"unknown config key 'tokenizer.levls' (from file {nested}): did you mean 'tokenizer.levels'" in err
    )
    assert new_files == []


@pytest.mark.parametrize("model", ["SASRec", "GRU4Rec"])
@pytest.mark.parametrize(
    "loss",
    [
        {"loss_type": "BPR"},  # RecBole's test case: its default uniform sampling, one negative
        {"loss_type": "CE", "train_neg_sample_args": None},  # RecBole's test case: no sampling
        {"loss_type": "CE"},  # our default: CE needs no negatives, so none are sampled
    ],
    ids=["BPR-uniform", "CE-none", "CE-default"],
)
def test_sequential_bpr_and_ce_losses_train(tmp_path, model, loss):
    """RecBole's sequential loss cases pass through our objective_function as through RecBole's."""
    result = objective_function(
        config_dict=tiny_config(tmp_path, model=model, dataset="tiny", **loss), saved=False
    )
    assert result["model"] == model
    assert result["test_result"] and all(math.isfinite(v) for v in result["test_result"].values())


@pytest.mark.parametrize(
    "loss, message",
    [
        ({"loss_type": "BPR", "train_neg_sample_args": None}, "loss_type: BPR needs one sampled negative"),
        (
            {"loss_type": "CE", "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1}},
            "train_neg_sample_args must be ~ with loss_type: CE",
        ),
    ],
)
def test_sequential_loss_without_matching_sampling_is_refused(tmp_path, loss, message):
    with pytest.raises(ConfigError, match=message) as error:
        objective_function(
            config_dict=tiny_config(tmp_path, model="SASRec", dataset="tiny", **loss), saved=False
        )
    assert "train_neg_sample_args from config_dict" in str(error.value)


def test_shipped_defaults_pass_the_rules():
    """Every default in RecBole's and our properties YAML passes the validation rules."""
    import glob

    import recbole

    from recbole_bbq.resources import properties_dir

    folders = [os.path.join(os.path.dirname(recbole.__file__), "properties"), properties_dir()]
    for path in [
        p for folder in folders for p in glob.glob(os.path.join(folder, "**", "*.yaml"), recursive=True)
    ]:
        with open(path) as f:
            content = yaml.load(f.read(), Loader=yaml.FullLoader) or {}
        for key, value in content.items():
            assert key not in RULES or RULES[key].accepts(value), (path, key, value)
            nested = {"tokenizer": TOKENIZER_RULES, "rqvae": RQVAE_RULES}.get(key, {})
            for sub_key, sub_value in (value if nested else {}).items():
                assert sub_key not in nested or nested[sub_key].accepts(sub_value), (path, key, sub_key)


# -----------------------------------------------------------------------------------------------
# Data files and caches (rows 3, 4, 10-12, 14-16)
# -----------------------------------------------------------------------------------------------


TINY_VIT = {
    "model_cfg": {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
        "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
    }
}


# --------------------------------------------------------------------------- helpers


def listing(folder):
    """Sorted file names in ``folder`` (empty when it does not exist)."""
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def toy_unisrec(folder, rows=None, header=None):
    """A two-item, one-user UniSRec folder with prefix ``Toy``; ``rows`` overrides split rows."""
    header = "\t".join(_common.BENCHMARK_HEADER) if header is None else header
    folder.mkdir()
    (folder / "Toy.item2index").write_text("ASIN0 0\nASIN1 1\n")
    (folder / "Toy.user2index").write_text("U0 0\n")
    rows = {"train": "0\t0\t1\n", "valid": "0\t0\t1\n", "test": "0\t0\t1\n", **(rows or {})}
    for split, text in rows.items():
        (folder / f"Toy.{split}.inter").write_text(f"{header}\n{text}")
    return folder


def run_unisrec(source, out):
    return unisrec.main(["--input", str(source), "--name", "Toy", "--output-dir", str(out)])


@pytest.fixture
def tiny_copy(tmp_path):
    """A writable copy of test_data/tiny; returns ``(data_root, data_dir)``."""
    root = tmp_path / "data"
    shutil.copytree(f"{TEST_DATA}/tiny", root / "tiny")
    return root, root / "tiny"


def load_tiny(tmp_path, root):
    """Build the tiny dataset through recbole_bbq's hook."""
    return create_dataset(Config("SASRec", "tiny", config_dict=tiny_config(tmp_path, data_path=str(root))))


def edit_lines(path, edit):
    """Rewrite a text file: ``edit(list of lines without ends)`` returns the new lines."""
    lines = path.read_text().splitlines()
    path.write_text("\n".join(edit(lines)) + "\n")


def refused_by_hook(tmp_path, root, data_dir, pattern):
    """Loading tiny raises a DataError matching ``pattern`` and leaves the folder as it was."""
    before = listing(data_dir)
    with pytest.raises(DataError, match=pattern):
        load_tiny(tmp_path, root)
    assert listing(data_dir) == before


def write_benchmark(root, name, train_rows):
    """A pre-split dataset whose train file has ``train_rows`` (valid/test have one good row each)."""
    folder = root / name
    folder.mkdir(parents=True)
    header = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    (folder / f"{name}.train.inter").write_text(header + "".join(train_rows))
    (folder / f"{name}.valid.inter").write_text(header + "u0\ti1 i2\ti3\n")
    (folder / f"{name}.test.inter").write_text(header + "u0\ti1 i2 i3\ti4\n")
    (folder / f"{name}.yaml").write_text(
        "load_col:\n  inter: [user_id, item_id_list, item_id]\n"
        "benchmark_filename: [train, valid, test]\nalias_of_item_id: [item_id_list]\n"
        "MAX_ITEM_LIST_LENGTH: 5\n"
    )
    return folder


def write_item_file(data_dir, dataset, header, rows, encoding_="utf-8"):
    os.makedirs(data_dir, exist_ok=True)
    lines = ["\t".join(header)] + ["\t".join(row) for row in rows]
    with open(os.path.join(data_dir, f"{dataset}.item"), "w", encoding=encoding_) as f:
        f.write("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- row 3: image cache key


def test_image_cache_key_includes_missing_policy(tmp_path, capsys, caplog):
    from PIL import Image

    arch_dir = tmp_path / "tiny_vit"
    arch_dir.mkdir()
    (arch_dir / "open_clip_config.json").write_text(json.dumps(TINY_VIT))
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(images / "a.png")  # item 'b' has no image
    data_dir = tmp_path / "data" / "shop"
    write_item_file(data_dir, "shop", ["item_id:token"], [["a"], ["b"]])
    argv = [
        "--dataset",
        "shop",
        "--data-path",
        str(tmp_path / "data"),
        "--image-dir",
        str(images),
        "--model",
        f"local-dir:{arch_dir}",
        "--pretrained",
        "none",
        "--device",
        "cpu",
    ]

    assert encoding.run_encoder_cli(encode_images.main, argv + ["--missing", "zero"]) == 0
    out = feature_path(str(data_dir), "shop", "image")
    assert read_feature_file(out).missing.tolist() == [False, True]
    before, mtime = listing(data_dir), os.stat(out).st_mtime_ns
    capsys.readouterr()
    caplog.clear()

    # An earlier zero-policy file is not a cache hit for --missing error: the run stops on 'b'.
    assert encoding.run_encoder_cli(encode_images.main, argv + ["--missing", "error"]) == 2
    err = capsys.readouterr().err
    assert "cached" not in caplog.text
    assert "shop.item" in err and "item 'b': no image file" in err
    assert listing(data_dir) == before and os.stat(out).st_mtime_ns == mtime

    assert encoding.run_encoder_cli(encode_images.main, argv + ["--missing", "zero"]) == 0
    assert "cached" in caplog.text and os.stat(out).st_mtime_ns == mtime


# --------------------------------------------------------------------------- row 4: empty history


def test_empty_history_rejected_by_converter(tmp_path, capsys):
    source = toy_unisrec(tmp_path / "uni", rows={"train": "0\t0\t1\n0\t\t1\n"})
    out = tmp_path / "out"
    assert run_unisrec(source, out) == 2
    err = capsys.readouterr().err
    assert "Toy.train.inter, line 3: empty history" in err and "delete the row" in err
    assert listing(out) == []


def test_empty_history_rejected_by_hook(tmp_path):
    root = tmp_path / "data"
    folder = write_benchmark(root, "bench", ["u0\ti1\ti2\n", "u1\t\ti3\n", "u1\ti3\ti4\n"])
    before = listing(folder)
    config = Config("SASRec", "bench", config_dict=tiny_config(tmp_path, data_path=str(root)))
    pattern = r"bench\.train\.inter, line 3, column 2 \('item_id_list', token_seq\): empty history"
    with pytest.raises(DataError, match=pattern):
        create_dataset(config)
    assert listing(folder) == before


# --------------------------------------------------------------------------- row 10: bad fields and types


def test_non_numeric_timestamp_names_file_and_line(tmp_path, tiny_copy, capsys):
    root, data_dir = tiny_copy
    edit_lines(data_dir / "tiny.inter", lambda lines: lines[:4] + ["u1\ti16\t1\tyesterday"] + lines[5:])
    refused_by_hook(
        tmp_path,
        root,
        data_dir,
        r"tiny\.inter, line 5, column 4 \('timestamp', float\): 'yesterday' is not a number",
    )

    raw = tmp_path / "raw"
    raw.mkdir()
    reviews = [
        {"reviewerID": "u1", "asin": "i1", "unixReviewTime": 100},
        {"reviewerID": "u1", "asin": "i2", "unixReviewTime": "soon"},
    ]
    (raw / "Toys.json").write_text("".join(json.dumps(r) + "\n" for r in reviews))
    out = tmp_path / "out"
    assert amazon.main(["--input", str(raw), "--name", "Toys", "--output-dir", str(out)]) == 2
    assert "Toys.json, line 2: 'unixReviewTime' is 'soon', not a number" in capsys.readouterr().err
    assert listing(out) == []


def test_bad_column_type_names_file_and_line(tmp_path, tiny_copy, capsys):
    root, data_dir = tiny_copy
    bad_header = "user_id:token\titem_id:token\trating:float\ttimestamp:date"
    edit_lines(data_dir / "tiny.inter", lambda lines: [bad_header, *lines[1:]])
    refused_by_hook(
        tmp_path,
        root,
        data_dir,
        r"tiny\.inter, line 1, column 4 \('timestamp'\): unknown type 'date'; use one of token",
    )

    header = "user_id:token\titem_id_list:float\titem_id:token"
    source = toy_unisrec(tmp_path / "uni", header=header)
    out = tmp_path / "out"
    assert run_unisrec(source, out) == 2
    err = capsys.readouterr().err
    assert "Toy.train.inter, line 1, column 2: 'item_id_list' has type 'float', expected 'token_seq'" in err
    assert listing(out) == []


def test_header_only_inter_file(tmp_path, tiny_copy, capsys):
    root, data_dir = tiny_copy
    edit_lines(data_dir / "tiny.inter", lambda lines: lines[:1])
    refused_by_hook(
        tmp_path, root, data_dir, r"tiny\.inter: only a header \(line 1\) and no interaction rows"
    )

    source = toy_unisrec(tmp_path / "uni", rows={"test": ""})
    out = tmp_path / "out"
    assert run_unisrec(source, out) == 2
    assert "Toy.test.inter: no interaction rows after the header (line 1)" in capsys.readouterr().err
    assert listing(out) == []


def test_row_with_missing_fields_is_refused(tmp_path, tiny_copy, capsys):
    root, data_dir = tiny_copy
    inter = data_dir / "tiny.inter"
    original = inter.read_text()
    edit_lines(inter, lambda lines: lines[:6] + ["u1\ti20\t3"] + lines[7:])  # the timestamp is gone
    refused_by_hook(tmp_path, root, data_dir, r"tiny\.inter, line 7: 3 fields, but the header has 4")

    inter.write_text(original)
    edit_lines(inter, lambda lines: lines[:6] + ["u1\ti20\t3\t"] + lines[7:])  # an empty timestamp
    refused_by_hook(
        tmp_path,
        root,
        data_dir,
        r"tiny\.inter, line 7, column 4 \('timestamp', float\): no value; RecBole would fill in "
        r"the column mean",
    )

    source = toy_unisrec(tmp_path / "uni", rows={"valid": "0\t0\n"})
    out = tmp_path / "out"
    assert run_unisrec(source, out) == 2
    assert "Toy.valid.inter, line 2: expected 3 tab-separated columns" in capsys.readouterr().err
    assert listing(out) == []


# --------------------------------------------------------------------------- row 11: bad bytes


def test_non_utf8_converter_input_names_offset(tmp_path, capsys):
    source = tmp_path / "lc"
    source.mkdir()
    # line 1 is '{\n' (bytes 0-1); line 2 is '  "0": ["' (bytes 2-10), then the bad byte at offset 11
    (source / "Toy.inter.json").write_bytes(b'{\n  "0": ["\xff", "2"]\n}\n')
    out = tmp_path / "out"
    assert lcrec.main(["--input", str(source), "--name", "Toy", "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Toy.inter.json, line 2, byte offset 11 (byte 10 of the line): byte 0xff is not valid utf-8" in err
    assert "Traceback" not in err

    raw = tmp_path / "raw"
    raw.mkdir()
    good = json.dumps({"reviewerID": "u1", "asin": "i1", "unixReviewTime": 1}).encode() + b"\n"
    with gzip.open(raw / "Toys.json.gz", "wb") as f:
        f.write(good + b'{"reviewerID": "\xe9"}\n')
    assert amazon.main(["--input", str(raw), "--name", "Toys", "--output-dir", str(out)]) == 2
    offset = len(good) + len(b'{"reviewerID": "')
    assert f"Toys.json.gz, line 2, byte offset (uncompressed) {offset}" in capsys.readouterr().err
    assert listing(out) == []


def test_non_utf8_item_text_names_offset(tmp_path, tiny_copy, capsys):
    root, data_dir = tiny_copy
    item = data_dir / "tiny.item"
    lines = item.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b"movie", "mövie".encode("latin-1"))  # line 3, a latin-1 byte
    item.write_bytes(b"\n".join(lines))
    offset = len(lines[0]) + len(lines[1]) + 2 + lines[2].index(b"\xf6")
    pattern = (
        rf"tiny\.item, line 3, byte offset {offset} \(byte \d+ of the line\): byte 0xf6 is not valid utf-8"
    )
    refused_by_hook(tmp_path, root, data_dir, pattern)

    # encode_text reports the same position (pandas used to report an offset in its buffer)
    argv = ["--dataset", "tiny", "--data-path", str(root), "--device", "cpu"]
    before = listing(data_dir)
    assert encoding.run_encoder_cli(encode_text.main, argv) == 2
    assert f"tiny.item, line 3, byte offset {offset} " in capsys.readouterr().err
    assert listing(data_dir) == before


# --------------------------------------------------------------------------- row 12: empty item text


def test_empty_item_text_counted_as_missing(tmp_path, monkeypatch, caplog):
    encoded = []

    def fake_encode_texts(texts, **kwargs):  # a stand-in for MiniLM: the model is not the point here
        encoded.append(list(texts))
        return np.ones((len(texts), 4), dtype=np.float32)

    monkeypatch.setattr(text_encoder, "encode_texts", fake_encode_texts)
    data_dir = str(tmp_path / "shop")
    rows = [["p1", "Glass beaker"], ["p2", ""], ["p3", "Duct tape"], ["p4", "  "]]
    write_item_file(data_dir, "shop", ["item_id:token", "text:token_seq"], rows)

    before = listing(data_dir)
    with pytest.raises(
        DataError, match=r"shop\.item, data row 2: item 'p2' has no text; 2 of 4 items have none"
    ):
        text_encoder.encode_dataset_text(data_dir, "shop", missing_policy="error")
    assert listing(data_dir) == before and encoded == []

    out = text_encoder.encode_dataset_text(data_dir, "shop", show_progress=False)
    loaded = read_feature_file(out)
    assert encoded == [["Glass beaker", "Duct tape"]]  # empty texts never reach the encoder
    assert loaded.missing.tolist() == [False, True, False, True] and loaded.meta["missing"] == 2
    assert not loaded.features[[1, 3]].any() and loaded.features[[0, 2]].all()
    assert "2 item(s) without text" in caplog.text and "'p2', 'p4'" in caplog.text

    # a cached file can not hide empty texts from a later --missing error run
    with pytest.raises(DataError, match=r"item 'p2' has no text"):
        text_encoder.encode_dataset_text(data_dir, "shop", missing_policy="error")


# --------------------------------------------------------------------------- row 14: killed plot write


def tiny_with_text(tmp_path):
    root = tmp_path / "data"
    shutil.copytree(f"{TEST_DATA}/tiny", root / "tiny")
    matrix = np.random.default_rng(0).normal(size=(30, 16))
    write_feature_file(feature_path(root / "tiny", "tiny", "text"), [f"i{i}" for i in range(1, 31)], matrix)
    return root


SMALL_STAGES = {
    "modalities": ["text"],
    "behaviour": {"epochs": 1},
    "tokenizer": {"epochs": 2, "codebook_size": 8, "latent_dim": 8, "hidden_dim": 16},
    "rqvae": {
        "epochs": 1,
        "levels": 2,
        "codebook_size": 4,
        "latent_dim": 4,
        "hidden_dim": 8,
        "batch_size": 32,
    },
}


def kill_during_atomic_write(path):
    """A process that dies (SIGKILL-like ``os._exit``) while writing ``path`` through atomic_path."""
    script = textwrap.dedent(
        f"""
        import os
        from recbole_bbq.data.io import atomic_path
        with atomic_path({str(path)!r}) as tmp:
            os._exit(9)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 9, done.stderr


def test_orphaned_temp_files_removed_and_plot_regenerated(tmp_path):
    from recbole_bbq.tokenizer.stage import run_tokenizer_stage, usage_plot_path

    root = tiny_with_text(tmp_path)
    data_dir = root / "tiny"
    config = Config("SASRec", "tiny", config_dict=tiny_config(tmp_path, data_path=str(root), **SMALL_STAGES))
    path, _ = run_tokenizer_stage(config, show_progress=False)
    plot = usage_plot_path(path)
    complete = listing(data_dir)

    os.remove(plot)
    kill_during_atomic_write(plot)  # what a kill during plot_code_usage leaves: a 0-byte temp
    killed = [name for name in listing(data_dir) if name not in complete]
    assert len(killed) == 1 and killed[0].startswith(".tiny.bbq-") and killed[0].endswith(".tmp.png")
    assert os.path.getsize(data_dir / killed[0]) == 0
    old = data_dir / f".{os.path.basename(path)[:-4]}.k3y4old1.tmp.npz"  # an older naming, 2 hours old
    old.write_bytes(b"")
    os.utime(old, (time.time() - 7200,) * 2)
    young = data_dir / f".{os.path.basename(path)[:-4]}.k3y4new1.tmp.npz"  # writer unknown and recent: kept
    young.write_bytes(b"")

    again, _ = run_tokenizer_stage(config, show_progress=False)  # the artifact is reused...
    assert again == path
    assert os.path.getsize(plot) > 0  # ...and the missing plot is drawn again
    assert listing(data_dir) == sorted(complete + [young.name])


# --------------------------------------------------------------------------- row 15: concurrent runs


LOGGER_SCRIPT = textwrap.dedent(
    """
    import multiprocessing
    import os
    import shutil
    import sys

    import recbole_bbq.utils as utils

    SETTINGS = {"model": "SASRec", "dataset": "tiny", "state": "ERROR", "checkpoint_dir": "saved"}


    class RunConfig(dict):
        final_config_dict = SETTINGS

        def __getitem__(self, key):
            return SETTINGS.get(key)


    def lose_the_race(folder):
        \"\"\"The other run creates each folder between RecBole's exists() check and its makedirs().\"\"\"
        os.chdir(folder)
        makedirs = os.makedirs

        def racing_makedirs(name, mode=0o777, exist_ok=False):
            makedirs(name, exist_ok=True)
            makedirs(name, mode, exist_ok)

        os.makedirs = racing_makedirs
        try:
            utils.recbole_init_logger(RunConfig())
            print("recbole: no error")
        except FileExistsError as error:
            print(f"recbole: FileExistsError {error.filename}")
        shutil.rmtree("log")
        utils.init_logger(RunConfig())
        print("recbole_bbq: ok")
        os.makedirs = makedirs


    def start_together(barrier):
        barrier.wait()
        utils.init_logger(RunConfig())


    if __name__ == "__main__":
        lose_the_race(sys.argv[1])
        os.chdir(sys.argv[2])
        context = multiprocessing.get_context("fork")  # both runs share this process's imports
        barrier = context.Barrier(2)
        runs = [context.Process(target=start_together, args=(barrier,)) for _ in range(2)]
        for run in runs:
            run.start()
        for run in runs:
            run.join(120)
        print("concurrent exit codes", [run.exitcode for run in runs])
    """
)


def test_concurrent_runs_share_log_folder(tmp_path):
    (tmp_path / "logger.py").write_text(LOGGER_SCRIPT)
    race, fresh = tmp_path / "race", tmp_path / "fresh"
    race.mkdir()
    fresh.mkdir()
    done = subprocess.run(
        [sys.executable, str(tmp_path / "logger.py"), str(race), str(fresh)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    # Deterministic: when the other run wins the race, RecBole's own init_logger dies, ours does not.
    assert "recbole: FileExistsError ./log" in done.stdout
    assert "recbole_bbq: ok" in done.stdout
    assert listing(race / "log") == ["SASRec"] and (race / "saved").is_dir()
    # Two runs released at once in a fresh folder both get their logger.
    assert "concurrent exit codes [0, 0]" in done.stdout, done.stderr
    assert listing(fresh / "log" / "SASRec") and (fresh / "saved").is_dir()


# --------------------------------------------------------------------------- row 16: pruning


def test_prune_cache_dry_run_then_remove(tmp_path, capsys):
    from recbole_bbq.cache import prune_artifacts, prune_cache
    from recbole_bbq.pipeline import prepare_semantic_ids

    root = tiny_with_text(tmp_path)
    data_dir = root / "tiny"
    config_file = tmp_path / "stages.yaml"
    config_file.write_text(yaml.safe_dump(tiny_config(tmp_path, data_path=str(root), **SMALL_STAGES)))
    files = [str(config_file)]
    for model in ("BBQRec", "TIGER"):  # the artifacts the current config uses
        prepare_semantic_ids(model, "tiny", files, show_progress=False)
    write_semantic_id_file(
        semantic_id_path(data_dir, "tiny", "index"),
        [f"i{i}" for i in range(1, 31)],
        [[i % 4, i // 4] for i in range(30)],
    )  # published codes: an input
    current = listing(data_dir)

    stale = {  # artifacts of earlier inputs or settings
        "tiny.bbq-0123456789abcdef.sid.npz": b"old",
        "tiny.bbq-0123456789abcdef.usage.png": b"old",
        "tiny.behaviour-0123456789abcdef.npz": b"old",
        "tiny.tiger-fedcba9876543210.sid.npz": b"old",
        ".tiny.text.abcd1234.tmp.npz": b"",
    }
    for name, data in stale.items():
        (data_dir / name).write_bytes(data)
    os.utime(data_dir / ".tiny.text.abcd1234.tmp.npz", (time.time() - 7200,) * 2)
    expected = sorted(str(data_dir / name) for name in stale)

    planned = prune_cache("tiny", files)  # dry run: lists, removes nothing
    assert planned == expected
    assert listing(data_dir) == sorted(current + list(stale))

    cli = ["--prune-cache", "--dataset=tiny", f"--config_files={config_file}"]
    assert run_recbole_bbq.main(cli) == 0  # the CLI's dry run
    assert capsys.readouterr().out.splitlines()[:-1] == expected
    assert listing(data_dir) == sorted(current + list(stale))
    assert run_recbole_bbq.main(cli + ["--confirm"]) == 0
    assert "removed 5 files" in capsys.readouterr().out
    assert listing(data_dir) == current  # inputs and the current artifacts stay
    assert prune_cache("tiny", files) == []

    with pytest.raises(ConfigError, match=r"tiny\.text\.npz: not a cached artifact"):
        prune_artifacts([str(data_dir / "tiny.text.npz")], dry_run=False)
    assert listing(data_dir) == current
