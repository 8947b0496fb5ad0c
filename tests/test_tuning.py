"""Equal-budget tuning on valid (``run_recbole_bbq.py --tune``) on the synthetic ``tiny``."""

import glob
import os
import pathlib

import pytest
import yaml

import run_recbole_bbq
from recbole_bbq import quick_start
from recbole_bbq.errors import ConfigError
from recbole_bbq.trainer import CompatTrainerMixin
from recbole_bbq.tuning import TuningRow, read_search_space, run_tuning, trial_overrides
from recbole_bbq.tuning import search as tuning_search

from conftest import tiny_config


def write_yaml(path, value):
    pathlib.Path(path).write_text(yaml.safe_dump(value))
    return str(path)


@pytest.fixture
def setup(tmp_path):
    """A tuning config (2 trials, 1 epoch) and a SASRec search space on tiny."""
    spaces = tmp_path / "spaces"
    spaces.mkdir()
    write_yaml(spaces / "SASRec.yaml", {"tuning_space": {"loguniform": {"learning_rate": [-7.0, -4.0]}}})
    settings = {"trials": 2, "algo": "random", "seed": 3, "epochs": 1, "space_dir": str(spaces)}
    config = tiny_config(tmp_path, tuning=settings, n_layers=1, hidden_size=16, inner_size=32)
    config.pop("seed")
    return {"config": write_yaml(tmp_path / "tuning.yaml", config), "spaces": spaces, "out": tmp_path / "out"}


def tune(setup, labels=("SASRec",), **kwargs):
    return run_tuning(list(labels), "tiny", [setup["config"]], str(setup["out"]), **kwargs)


def test_tuning_never_evaluates_test_and_writes_the_best_settings(setup, monkeypatch):
    test_loaders, evaluated = [], []
    real_preparation, real_evaluate = quick_start.data_preparation, CompatTrainerMixin.evaluate

    def preparation(config, dataset):
        loaders = real_preparation(config, dataset)
        test_loaders.append(loaders[2])
        return loaders

    def evaluate(self, eval_data, *args, **kwargs):
        evaluated.append(eval_data)
        return real_evaluate(self, eval_data, *args, **kwargs)

    monkeypatch.setattr(quick_start, "data_preparation", preparation)
    monkeypatch.setattr(CompatTrainerMixin, "evaluate", evaluate)
    paths = tune(setup)

    assert len(test_loaders) == 2 and evaluated  # two trials, each validated
    assert not any(loader is test for loader in evaluated for test in test_loaders)
    records = paths["rows"]["SASRec"]
    assert [r["status"] for r in records] == ["ok", "ok"]
    assert all("test_result" not in r for r in records)
    best = max(records, key=lambda r: r["best_valid_score"])
    tuned = yaml.safe_load(open(paths["yaml"]))["compare_variants"]
    assert tuned == {"SASRec": {"model": "SASRec", "learning_rate": best["params"]["learning_rate"]}}
    markdown = open(paths["markdown"]).read()
    assert "2 trials (random search, seed 3), at most 1 epochs per trial" in markdown
    assert "The test split is never evaluated" in markdown


def test_rerun_resumes_from_the_stored_trials(setup, monkeypatch):
    first = tune(setup)
    calls = []
    monkeypatch.setattr(tuning_search, "run_trial", lambda *args: calls.append(args))
    second = tune(setup)
    assert not calls  # the same proposals, every one already stored
    assert second["rows"] == first["rows"]


def test_a_repeated_proposal_is_counted_but_trained_once(setup, monkeypatch):
    write_yaml(setup["spaces"] / "SASRec.yaml", {"tuning_space": {"choice": {"learning_rate": [0.003]}}})
    calls = []
    real_run_trial = tuning_search.run_trial
    monkeypatch.setattr(tuning_search, "run_trial", lambda *args: calls.append(1) or real_run_trial(*args))
    records = tune(setup)["rows"]["SASRec"]
    assert len(calls) == 1 and len(records) == 2
    assert records[1]["duplicate_of"].startswith("001-")
    assert records[1]["best_valid_score"] == records[0]["best_valid_score"]


def test_trials_of_other_settings_are_not_mixed_in(setup):
    tune(setup)
    config = yaml.safe_load(open(setup["config"]))
    config["learning_rate"] = 0.02  # another protocol: the stored trials no longer apply
    write_yaml(setup["config"].replace("tuning.yaml", "other.yaml"), config)
    with pytest.raises(ConfigError, match="holds trials run under other config files"):
        run_tuning(
            ["SASRec"], "tiny", [setup["config"].replace("tuning.yaml", "other.yaml")], str(setup["out"])
        )


def test_search_space_errors_name_the_file_and_key(tmp_path):
    path = write_yaml(tmp_path / "X.yaml", {"tuning_space": {"choice": {"learnin_rate": [0.1]}}})
    with pytest.raises(ConfigError, match=r"learnin_rate.*X.yaml.*did you mean 'learning_rate'"):
        read_search_space(path)
    path = write_yaml(tmp_path / "Y.yaml", {"tuning_space": {"loguniform": {"learning_rate": [-4, -8]}}})
    with pytest.raises(ConfigError, match=r"Y.yaml: tuning_space.loguniform.learning_rate needs low < high"):
        read_search_space(path)
    with pytest.raises(ConfigError, match=r"search space file .*Z.yaml does not exist"):
        read_search_space(str(tmp_path / "Z.yaml"))


def test_exhaustive_search_and_missing_settings_are_refused(setup):
    config = yaml.safe_load(open(setup["config"]))
    config["tuning"]["algo"] = "exhaustive"
    write_yaml(setup["config"], config)
    with pytest.raises(ConfigError, match=r"tuning.algo must be 'random' or 'bayes'"):
        tune(setup)
    del config["tuning"]["epochs"]
    config["tuning"]["algo"] = "random"
    write_yaml(setup["config"], config)
    with pytest.raises(ConfigError, match=r"missing: epochs"):
        tune(setup)


def test_trial_overrides_keep_the_rows_settings_and_integer_steps():
    row = TuningRow("BBQRec", "BBQRec", {"eval_step": 2}, "unused", "digest")
    space = {"quniform": {"n_layers": [1, 3, 1]}, "choice": {"tokenizer.use_club": [True]}}
    sections = {"tokenizer": {"epochs": 5, "use_club": False}}
    overrides = trial_overrides({"n_layers": 2.0, "tokenizer.use_club": True}, space, row, sections)
    assert overrides == {"eval_step": 2, "n_layers": 2, "tokenizer": {"epochs": 5, "use_club": True}}
    assert isinstance(overrides["n_layers"], int)


def test_cli_tunes_and_prints_where_the_reports_are(setup, capsys):
    argv = ["--tune", "--model=SASRec", "--dataset=tiny", f"--config_files={setup['config']}"]
    argv.append(f"--results_dir={setup['out']}")
    assert run_recbole_bbq.main(argv) == 0
    out = capsys.readouterr().out
    assert "tuning.md" in out and "tuned.yaml" in out
    assert len(glob.glob(os.path.join(setup["out"], "tiny", "tuning", "SASRec", "trials", "*.json"))) == 2
    assert run_recbole_bbq.main([*argv, "--seeds=1,2"]) == 2  # tuning picks on valid, not over seeds


def test_a_comparison_runs_the_tuned_settings(setup):
    from recbole_bbq.compare import read_run, run_comparison, run_file

    paths = tune(setup)
    tuned = yaml.safe_load(open(paths["yaml"]))["compare_variants"]["SASRec"]["learning_rate"]
    results = str(setup["out"] / "compared")
    run_comparison(
        ["SASRec"], "tiny", [1], config_file_list=[setup["config"], paths["yaml"]], results_dir=results
    )
    record = read_run(run_file(os.path.join(results, "tiny"), "SASRec", 1))
    assert record["status"] == "ok" and record["config"]["learning_rate"] == tuned
