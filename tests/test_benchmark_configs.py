"""The benchmark configs name real models and keys (a typo would silently change a table)."""

import glob
import os

import pytest
import yaml

from recbole_bbq.compare.shared_weights import WEIGHTS_OF
from recbole_bbq.config import Config
from recbole_bbq.tokenizer.tokenizer import tokenizer_params

from conftest import REPO_DIR, TEST_DATA

CONFIGS = os.path.join(REPO_DIR, "benchmarks", "configs")


def read(name):
    with open(os.path.join(CONFIGS, name), encoding="utf-8") as f:
        return yaml.safe_load(f)


@pytest.mark.parametrize(
    "name",
    [
        "ablations.yaml",
        "instruments_variants.yaml",
        "instruments_cpu.yaml",
        "scientific_cpu.yaml",
        "instruments_gpu.yaml",
        "scientific_converged_cpu.yaml",
        "scientific_ablations_tuned.yaml",
    ],
)
def test_variants_use_known_models_and_keys(name):
    for label, spec in read(name)["compare_variants"].items():
        model = spec.get("model", spec.get("base", label))
        known = Config(model, "tiny", config_dict={"data_path": TEST_DATA}).final_config_dict
        for key, value in spec.items():
            if key == "tokenizer":
                tokenizer_params(value)  # unknown tokenizer keys raise
            elif key == WEIGHTS_OF:
                assert value in read(name)["compare_variants"] or value == model, f"{name}: {label}: {value}"
            elif key not in ("model", "base"):
                assert key in known, f"{name}: {label} sets unknown key {key}"


def test_every_benchmark_config_loads():
    for path in glob.glob(os.path.join(CONFIGS, "**", "*.yaml"), recursive=True):
        config = Config("SASRec", "tiny", config_file_list=[path], config_dict={"data_path": TEST_DATA})
        assert config["model"] == "SASRec"


@pytest.mark.parametrize("model", ["SASRec", "UniSRec", "TIGER", "BBQRec"])
def test_tuning_spaces_name_known_keys(model):
    from recbole_bbq.tuning import read_search_space

    assert read_search_space(os.path.join(CONFIGS, "tuning", f"{model}.yaml"))


def test_top_level_keys_are_known():
    """A misspelt key in a benchmark config would silently leave a default in place."""
    known = set()
    for model in ("SASRec", "TIGER", "BBQRec", "FDSA"):
        known |= set(Config(model, "tiny", config_dict={"data_path": TEST_DATA}).final_config_dict)
    for name in sorted(os.path.basename(p) for p in glob.glob(os.path.join(CONFIGS, "*.yaml"))):
        unknown = sorted(set(read(name)) - known - {"compare_variants", "behaviour", "tokenizer"})
        assert not unknown, f"{name}: unknown keys {unknown}"


def test_the_tuned_script_runs_every_ablation_row():
    with open(os.path.join(REPO_DIR, "benchmarks", "scientific_tuned_cpu.sh"), encoding="utf-8") as f:
        halves = [
            line.strip().split("=", 1)[1].split(",")
            for line in f
            if line.startswith(("FIRST_ROWS=", "SECOND_ROWS="))
        ]
    ablations = read("scientific_ablations_tuned.yaml")
    reference = ablations["compare_reference"]
    # Each half is a comparison of its own: it must list the reference row (first).
    assert len(halves) == 2 and all(half[0] == reference for half in halves)
    rows = halves[0] + halves[1][1:]
    assert sorted(rows) == sorted(set(ablations["compare_variants"]) | {reference})
