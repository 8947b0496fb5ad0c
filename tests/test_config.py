"""Config layering, plugin-first lookups and the embedded ml-100k default."""

import os

import numpy as np
import pytest
import torch
import yaml

from recbole_bbq.config import Config
from recbole_bbq.data import ensure_embedded_dataset
from recbole_bbq.data.embedded import embedded_source_dir
from recbole_bbq.errors import UnknownModelError
from recbole_bbq.resources import property_file
from recbole_bbq.trainer import CompatTrainerMixin
from recbole_bbq.utils import create_dataset, get_model, get_trainer, plugin_model_names

from conftest import TEST_DATA, tiny_config


def test_plugin_overall_defaults_apply_to_recbole_models(tmp_path):
    config = Config("SASRec", "tiny", config_dict=tiny_config(tmp_path))
    with open(property_file("overall.yaml")) as f:
        overall = yaml.safe_load(f)
    assert config["valid_metric"] == overall["valid_metric"] == "NDCG@10"
    assert config["topk"] == overall["topk"]
    assert config["train_neg_sample_args"]["distribution"] == "none"  # CE needs no negatives


def test_dataset_local_yaml_is_loaded_and_user_values_win(tmp_path):
    config = Config("SASRec", "tiny", config_dict=tiny_config(tmp_path))
    assert config["MAX_ITEM_LIST_LENGTH"] == 10  # from test_data/tiny/tiny.yaml
    assert "MAX_ITEM_LIST_LENGTH" in config.parameters["Dataset"]

    user_yaml = tmp_path / "user.yaml"
    user_yaml.write_text("MAX_ITEM_LIST_LENGTH: 4\nlearning_rate: 0.005\n")
    config = Config("SASRec", "tiny", [str(user_yaml)], tiny_config(tmp_path, learning_rate=0.01))
    assert config["MAX_ITEM_LIST_LENGTH"] == 4  # config file beats dataset YAML
    assert config["learning_rate"] == 0.01  # config_dict beats config file


def test_cpu_run_selects_cpu_device(tmp_path):
    config = Config("SASRec", "tiny", config_dict=tiny_config(tmp_path, use_gpu=False))
    assert config["device"] == torch.device("cpu") and config["single_spec"]


def test_get_model_falls_back_to_recbole_and_rejects_unknown_names():
    from recbole.model.sequential_recommender import GRU4Rec

    assert get_model("GRU4Rec") is GRU4Rec
    with pytest.raises(UnknownModelError, match=r"Unknown model 'LightGBMish'.*SASRec"):
        get_model("LightGBMish")


def test_get_trainer_wraps_recbole_trainers():
    from recbole.trainer import Trainer as RecBoleTrainer
    from recbole.utils import ModelType

    trainer_class = get_trainer(ModelType.SEQUENTIAL, "SASRec")
    assert issubclass(trainer_class, CompatTrainerMixin)
    assert issubclass(trainer_class, RecBoleTrainer)


def test_importing_recbole_models_leaves_anomaly_detection_off():
    get_model("SINE")  # sine.py switches anomaly detection on at import time
    assert not torch.is_anomaly_enabled()


def test_numpy_aliases_removed_in_numpy2_exist():
    for alias in ("float", "int", "bool", "long", "object", "str", "complex"):
        assert hasattr(np, alias)


def test_embedded_ml100k_is_copied_once_into_data_path(tmp_path):
    target = tmp_path / "data" / "ml-100k"
    copied = ensure_embedded_dataset(str(target), "ml-100k")
    assert {os.path.basename(p) for p in copied} >= {"ml-100k.inter", "ml-100k.item"}
    source_inter = os.path.join(embedded_source_dir("ml-100k"), "ml-100k.inter")
    assert (target / "ml-100k.inter").read_bytes() == open(source_inter, "rb").read()
    assert not [name for name in os.listdir(target) if name.startswith(".")]  # no temp files
    assert ensure_embedded_dataset(str(target), "ml-100k") == []
    assert ensure_embedded_dataset(str(tmp_path / "other"), "not-embedded") == []


def test_ml100k_works_with_no_download(tmp_path):
    data_root = tmp_path / "data"
    config = Config("SASRec", "ml-100k", config_dict=tiny_config(tmp_path, data_path=str(data_root)))
    assert config["data_path"] == os.path.join(str(data_root), "ml-100k")
    assert config["MAX_ITEM_LIST_LENGTH"] == 50
    assert config["eval_args"]["split"] == {"LS": "valid_and_test"}
    assert config["eval_args"]["order"] == "TO" and config["eval_args"]["mode"]["test"] == "full"
    dataset = create_dataset(config)
    assert (dataset.user_num - 1, dataset.item_num - 1, dataset.inter_num) == (943, 1682, 100000)
    assert "timestamp" in dataset.inter_feat.columns


def test_torchvision_and_open_clip_import_after_compat():
    import subprocess
    import sys

    code = "import recbole_bbq, torchvision, open_clip, transformers; print('ok')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-2000:]


def test_plugin_model_inherits_its_recbole_parents_yaml(tmp_path):
    config = Config("BBQSASRec", "tiny", config_dict=tiny_config(tmp_path))
    assert config["hidden_size"] == 64 and config["loss_type"] == "CE"  # RecBole's SASRec.yaml
    assert config["sim_buckets"] == 8  # properties/model/BBQSASRec.yaml
    assert "BBQSASRec" in plugin_model_names() and "TIGER" in plugin_model_names()


def test_main_job_budget_applies_to_bbqrec_on_ml100k_only(tmp_path):
    """properties/dataset/ml-100k/BBQRec.yaml sizes the README main job; other pairs keep their defaults."""
    from recbole_bbq.pipeline import stage_config

    settings = {"data_path": str(tmp_path / "data")}
    bbqrec = Config("BBQRec", "ml-100k", config_dict=settings)
    assert (bbqrec["d_model"], bbqrec["n_layers"], bbqrec["history_length"], bbqrec["epochs"]) == (
        64,
        2,
        10,
        2,
    )
    assert bbqrec["behaviour"]["epochs"] == 2
    assert stage_config("ml-100k", config_dict=settings, model="BBQRec")["tokenizer"]["epochs"] == 50
    assert Config("SASRec", "ml-100k", config_dict=settings)["epochs"] == 3
    assert Config("BBQRec", "tiny", config_dict={"data_path": TEST_DATA})["d_model"] == 128
    assert Config("BBQRec", "ml-100k", config_dict={**settings, "d_model": 32})["d_model"] == 32  # user wins
