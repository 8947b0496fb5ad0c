"""The comparison command: every model x seed, per-run JSON, resume, report files and the CLI."""

import csv
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import ttest_rel

import recbole_bbq.compare as compare
import recbole_bbq.compare.runner as runner
from recbole_bbq.compare import resolve_variant, run_comparison
from recbole_bbq.compare.summary import summarize
from recbole_bbq.errors import ConfigError
from recbole_bbq.pipeline import run_pipeline

from conftest import REPO_DIR, TEST_DATA, tiny_config
from test_generative import model_config, tiny_root  # noqa: F401  (fixture)

CLI = os.path.join(REPO_DIR, "run_recbole_bbq.py")
REPORT_FILES = ("comparison.md", "comparison.csv", "comparison.png", "protocol.json")


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return {row["model"]: row for row in csv.DictReader(f)}


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def run_json(out, model, seed):
    return read_json(out / "runs" / f"{model}-seed{seed}.json")


def fake_pipeline(fail=None):
    """A stand-in for run_pipeline: SASRec beats GRU4Rec by a seed-dependent margin."""
    calls = []

    def run(model, dataset, config_file_list=None, config_dict=None, **kwargs):
        seed = config_dict["seed"]
        calls.append((model, seed))
        if fail and (model, seed) in fail:
            raise RuntimeError("while training\nCUDA out of memory (fake)")
        base = {"SASRec": 0.30, "GRU4Rec": 0.20}.get(model, 0.10)
        slope = 0.01 if model == "SASRec" else 0.02
        test = {"recall@10": base + 0.02 * seed, "ndcg@10": base / 2 + slope * seed * seed}
        return {
            "best_valid_score": base + 0.001 * seed,
            "best_valid_result": {"ndcg@10": base},
            "test_result": test,
        }

    run.calls = calls
    return run


def check_runs_and_csv(out, models, seeds, returned):
    """Per-run JSON == what run_pipeline returned; CSV mean/std == those over the seeds."""
    rows = read_csv(out / "comparison.csv")
    assert list(rows) == models
    for model in models[:2]:
        runs = [run_json(out, model, seed) for seed in seeds]
        assert all(r["status"] == "ok" and r["config"]["seed"] == s for r, s in zip(runs, seeds))
        for run, seed in zip(runs, seeds):
            assert run["test_result"] == dict(returned[model, seed]["test_result"])
            assert run["wall_time_s"] > 0
            # The per-user test values are kept, last in the record (long lists).
            assert run["test_per_user"] == returned[model, seed]["test_per_user"]
            assert list(run)[-1] == "test_per_user" and len(run["test_per_user"]["users"]) == 40
        for metric in runs[0]["test_result"]:
            values = [r["test_result"][metric] for r in runs]
            assert float(rows[model][f"{metric}_mean"]) == pytest.approx(np.mean(values), rel=1e-12, abs=0)
            assert float(rows[model][f"{metric}_std"]) == pytest.approx(
                np.std(values, ddof=1), rel=1e-9, abs=1e-15
            )
        assert (rows[model]["status"], rows[model]["n_seeds"], rows[model]["error"]) == ("ok", "2", "")

    failed = run_json(out, "NoSuchModel", 1)
    assert failed["status"] == "failed" and failed["error_type"] == "UnknownModelError"
    assert failed["error"].startswith("UnknownModelError: Unknown model 'NoSuchModel'")
    assert rows["NoSuchModel"]["status"] == "failed" and rows["NoSuchModel"]["n_seeds"] == "0"
    assert rows["NoSuchModel"]["ndcg@10_mean"] == "" and "UnknownModelError" in rows["NoSuchModel"]["error"]
    return rows


def check_report_and_protocol(out, seeds):
    """comparison.md ranks and marks the rows and states the protocol; protocol.json holds it."""
    report = (out / "comparison.md").read_text()
    table = report.split("## Test results")[1]
    assert table.index("| SASRec |") < table.index("| GRU4Rec |") < table.index("| NoSuchModel |")
    assert "failed: UnknownModelError" in report and " ± " in report
    assert report.count("**") >= 2 * 7 and "<u>" in report  # a best and a second in each column
    for text in (
        "all items (full ranking)",
        "none (RecBole default",
        "MAX_ITEM_LIST_LENGTH",
        "ttest_rel",
        "low power",
        "Per-user test:",
        "`scipy.stats.wilcoxon`",
    ):
        assert text in report
    protocol = read_json(out / "protocol.json")
    assert (
        protocol["dataset"] == "tiny"
        and protocol["seeds"] == seeds
        and protocol["MAX_ITEM_LIST_LENGTH"] == 10
    )
    assert (
        protocol["config_from_model"] == "SASRec" and protocol["candidate_set"] == "all items (full ranking)"
    )
    assert set(protocol["versions"]) == {"python", "torch", "recbole", "numpy", "recbole_bbq"}


def test_comparison_runs_every_cell_reports_and_resumes(tmp_path, monkeypatch, capsys):
    returned = {}
    real = runner.run_pipeline

    def spy(model, dataset, config_file_list=None, config_dict=None, **kwargs):
        result = real(model, dataset, config_file_list, config_dict, **kwargs)
        returned[model, config_dict["seed"]] = result
        return result

    monkeypatch.setattr(runner, "run_pipeline", spy)
    models, seeds, res = ["SASRec", "GRU4Rec", "NoSuchModel"], [1, 2], str(tmp_path / "res")
    summary = run_comparison(models, "tiny", seeds, config_dict=tiny_config(tmp_path), results_dir=res)
    out = tmp_path / "res" / "tiny"
    assert all((out / name).is_file() for name in REPORT_FILES)
    assert (summary["n_ok"], summary["n_failed"]) == (4, 2)
    assert set(returned) == {(m, s) for m in models[:2] for s in seeds}

    rows = check_runs_and_csv(out, models, seeds, returned)
    check_report_and_protocol(out, seeds)

    # Rerun: finished cells are skipped, the failed ones are tried again; same numbers.
    capsys.readouterr()
    fake = fake_pipeline()
    monkeypatch.setattr(runner, "run_pipeline", fake)
    again = run_comparison(models, "tiny", seeds, config_dict=tiny_config(tmp_path), results_dir=res)
    log = capsys.readouterr().out
    assert fake.calls == []
    assert log.count("skip (done)") == 4 and "[5/6] NoSuchModel seed 1 failed" in log
    assert read_csv(out / "comparison.csv") == rows and again["n_failed"] == 2


def test_partial_failure_retry_and_paired_test(tmp_path, monkeypatch):
    fake = fake_pipeline(fail={("GRU4Rec", 3)})
    monkeypatch.setattr(runner, "run_pipeline", fake)
    config, res = tiny_config(tmp_path), str(tmp_path / "res")
    run_comparison(
        ["GRU4Rec", "SASRec"], "tiny", [1, 2, 3], config_dict=config, results_dir=res, show_progress=False
    )
    out = tmp_path / "res" / "tiny"

    failed = run_json(out, "GRU4Rec", 3)
    assert failed["error"] == "RuntimeError: CUDA out of memory (fake)" and "Traceback" in failed["traceback"]
    rows = read_csv(out / "comparison.csv")
    assert (rows["GRU4Rec"]["status"], rows["GRU4Rec"]["n_seeds"], rows["GRU4Rec"]["seeds"]) == (
        "partial",
        "2",
        "1 2",
    )
    assert rows["SASRec"]["n_seeds"] == "3"
    report = (out / "comparison.md").read_text()
    assert "partial (2 seed(s) ok; failed: RuntimeError: CUDA out of memory (fake))" in report
    assert "- GRU4Rec seed 3: RuntimeError" in report
    # SASRec is best: bold; GRU4Rec second: underlined.
    assert "| **0.3400 ± 0.0200** |" in report and "| <u>0.2300 ± 0.0141</u> |" in report

    # The paired test uses the seeds both models finished (1 and 2).
    sas = [0.15 + 0.01 * s * s for s in (1, 2)]
    gru = [0.10 + 0.02 * s * s for s in (1, 2)]
    p = ttest_rel(sas, gru).pvalue
    assert f"| ndcg@10 | SASRec | GRU4Rec | 2 | {p:.4f} |" in report
    # recall@10 differs by the same 0.1 on every seed: no variance, no t-test.
    assert "| recall@10 | SASRec | GRU4Rec | 2 | n/a (the paired differences are constant) |" in report

    # A rerun retries only the failed cell.
    fake = fake_pipeline()
    monkeypatch.setattr(runner, "run_pipeline", fake)
    run_comparison(
        ["GRU4Rec", "SASRec"], "tiny", [1, 2, 3], config_dict=config, results_dir=res, show_progress=False
    )
    assert fake.calls == [("GRU4Rec", 3)]
    assert read_csv(out / "comparison.csv")["GRU4Rec"]["status"] == "ok"


def test_one_seed_has_no_std_and_no_test(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "run_pipeline", fake_pipeline())
    summary = run_comparison(
        ["SASRec", "TIGER"],
        "tiny",
        [4],
        config_dict=tiny_config(tmp_path),
        results_dir="r",
        show_progress=False,
    )
    rows = read_csv(summary["csv"])
    assert rows["SASRec"]["ndcg@10_std"] == "" and float(rows["SASRec"]["ndcg@10_mean"]) == pytest.approx(
        0.31
    )
    report = open(summary["markdown"], encoding="utf-8").read()
    assert "n/a (needs >= 2 seeds)" in report and " ± " not in report.split("| model |")[1]
    # Generative models (their config has beam_size) get their history length and beams listed.
    assert "- TIGER: history_length 20 (uses 10: capped at MAX_ITEM_LIST_LENGTH), beam_size 20" in report
    tiger = read_json(summary["protocol"])["generative_models"]["TIGER"]
    assert tiger == {"history_length": 20, "effective_history_length": 10, "beam_size": 20}


def test_stop_reasons_curves_and_resumable_cells(tmp_path, monkeypatch):
    """Each record keeps its valid curve and stop reason; the report shows them and says when a
    row was not stopped by early stopping; every cell trains under a stable checkpoint_name."""
    names = []

    def run(model, dataset, config_file_list=None, config_dict=None, **kwargs):
        names.append(config_dict["checkpoint_name"])
        reason = "time_budget" if model == "TIGER" else "early_stopping"
        curve = [{"epoch": e, "valid_score": 0.1 * e} for e in (1, 2, 3)]
        return {
            "best_valid_score": 0.3,
            "best_valid_result": {},
            "test_result": {"ndcg@10": 0.2},
            "valid_curve": curve,
            "stop_reason": reason,
            "epochs_trained": 3,
        }

    monkeypatch.setattr(runner, "run_pipeline", run)
    options = dict(config_dict=tiny_config(tmp_path), results_dir=str(tmp_path / "r"), show_progress=False)
    summary = run_comparison(["SASRec", "TIGER"], "tiny", [1, 2], **options)
    record = read_json(tmp_path / "r" / "tiny" / "runs" / "TIGER-seed1.json")
    assert record["stop_reason"] == "time_budget" and record["epochs_trained"] == 3
    assert [p["epoch"] for p in record["valid_curve"]] == [1, 2, 3]
    report = open(summary["markdown"], encoding="utf-8").read()
    assert "| stopped by | epochs |" in report and "| early stopping | 3, 3 |" in report
    assert "| time budget | 3, 3 |" in report
    assert "**Budget-limited table**" in report and "(TIGER:" in report
    assert os.path.getsize(summary["curves"]) > 0
    rows = read_csv(summary["csv"])
    assert rows["TIGER"]["stop_reasons"] == "time_budget time_budget" and rows["SASRec"]["epochs"] == "3 3"

    assert len(set(names)) == 4 and all(n.startswith("tiny-") for n in names)
    first = list(names)
    for path in (tmp_path / "r" / "tiny" / "runs").iterdir():
        path.unlink()
    again = []
    monkeypatch.setattr(
        runner,
        "run_pipeline",
        lambda m, d, f=None, c=None, **k: again.append(c["checkpoint_name"]) or run(m, d, f, c),
    )
    run_comparison(["SASRec", "TIGER"], "tiny", [1, 2], **options)
    assert again == first  # a rerun of a cut-short cell finds its own last state

    settings = {"config_file_list": [str(tmp_path / "a.yaml")], "config_dict": {}, "cmd_overrides": []}
    (tmp_path / "a.yaml").write_text("epochs: 3\n")
    before = compare.cell_checkpoint_name("tiny", "SASRec", 1, settings)
    (tmp_path / "a.yaml").write_text("epochs: 4\n")
    assert compare.cell_checkpoint_name("tiny", "SASRec", 1, settings) != before  # edited file: fresh start


def load_cli_module():
    spec = importlib.util.spec_from_file_location("run_recbole_bbq_cli", CLI)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_exit_codes_in_process(tmp_path, monkeypatch, capsys):
    cli = load_cli_module()
    argv = ["--model=NoSuchModel,AlsoMissing", "--seeds=1", "--dataset=tiny", f"--data_path={TEST_DATA}"]
    monkeypatch.setattr(sys, "argv", [CLI, *argv])
    assert cli.main() == 1  # every cell failed
    assert os.path.isfile(tmp_path / "results" / "tiny" / "comparison.md")
    monkeypatch.setattr(sys, "argv", [CLI, *argv, "--seed=5"])
    assert cli.main() == 2 and "--seeds only" in capsys.readouterr().err


def test_cli_comparison_subprocess(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            CLI,
            "--model=SASRec,NoSuchModel",
            "--seeds=1,2",
            "--dataset=tiny",
            f"--data_path={TEST_DATA}",
            f"--checkpoint_dir={tmp_path / 'saved'}",
            "--results_dir=out",
            "--epochs=1",
            "--show_progress=False",
            "--state=ERROR",
            "--train_batch_size=64",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "out" / "tiny"
    assert all((out / name).is_file() for name in REPORT_FILES)
    assert f"comparison: {os.path.join('out', 'tiny', 'comparison.md')}" in proc.stdout
    assert "| SASRec |" in proc.stdout and "failed: UnknownModelError" in proc.stdout
    rows = read_csv(out / "comparison.csv")
    assert rows["SASRec"]["n_seeds"] == "2" and rows["NoSuchModel"]["status"] == "failed"
    protocol = read_json(out / "protocol.json")
    assert "--seeds=1,2" in protocol["command"] and protocol["epochs"] == 1


def test_variants_train_their_model_with_their_overrides(tmp_path, monkeypatch):
    """compare_variants rows (ablations, per-model settings) run their model class with their keys."""
    fake = fake_pipeline()
    seen = {}

    def run(model, dataset, config_file_list=None, config_dict=None, **kwargs):
        seen[model, config_dict.get("n_layers")] = True
        return fake(model, dataset, config_file_list, config_dict, **kwargs)

    monkeypatch.setattr(runner, "run_pipeline", run)
    variants_file = tmp_path / "variants.yaml"
    variants_file.write_text("compare_variants:\n  SASRec-1layer: {model: SASRec, n_layers: 1}\n")
    summary = run_comparison(
        ["SASRec", "SASRec-1layer"],
        "tiny",
        [1],
        config_file_list=[str(variants_file)],
        config_dict=tiny_config(tmp_path),
        results_dir=tmp_path / "results",
        show_progress=False,
    )
    assert seen == {("SASRec", None): True, ("SASRec", 1): True}
    record = run_json(tmp_path / "results" / "tiny", "SASRec-1layer", 1)
    assert record["model"] == "SASRec-1layer" and record["model_class"] == "SASRec"
    assert set(read_csv(summary["csv"])) == {"SASRec", "SASRec-1layer"}
    with pytest.raises(ConfigError, match="compare_variants label 'a b'"):
        compare.load_variants(None, {"compare_variants": {"a b": {"model": "SASRec"}}})


def test_report_only_rebuilds_tables_without_training(tmp_path, monkeypatch):
    fake = fake_pipeline()
    monkeypatch.setattr(runner, "run_pipeline", fake)
    options = dict(config_dict=tiny_config(tmp_path), results_dir=tmp_path / "results", show_progress=False)
    run_comparison(["SASRec"], "tiny", [1, 2], **options)
    calls = len(fake.calls)
    summary = run_comparison(["SASRec", "GRU4Rec"], "tiny", [1, 2], report_only=True, **options)
    assert len(fake.calls) == calls  # nothing trained
    rows = read_csv(summary["csv"])
    assert rows["SASRec"]["status"] == "ok" and rows["GRU4Rec"]["n_seeds"] == "0"
    # A cell without a record was never run: not a failure.
    assert rows["GRU4Rec"]["status"] == "not run" and summary["n_failed"] == 0 and summary["n_not_run"] == 2
    os.remove(os.path.join(tmp_path, "results", "tiny", "runs", "SASRec-seed2.json"))
    summary = run_comparison(["SASRec"], "tiny", [1, 2], report_only=True, **options)
    assert read_csv(summary["csv"])["SASRec"]["status"] == "ok"
    assert "| ok; not run: seed 2 |" in open(summary["markdown"], encoding="utf-8").read()


def test_command_line_is_passed_in_not_read_from_sys_argv(tmp_path, monkeypatch):
    """run_comparison records the argv it is given (protocol.json, each cell's settings), never sys.argv."""
    monkeypatch.setattr(runner, "run_pipeline", fake_pipeline())
    monkeypatch.setattr(sys, "argv", ["/garbage/program", "garbage-argument"])
    argv = ["run_recbole_bbq.py", "--model=SASRec", "--seeds=1", "--results_dir=r", "--learning_rate=0.01"]
    summary = run_comparison(
        ["SASRec"],
        "tiny",
        [1],
        config_dict=tiny_config(tmp_path),
        results_dir=str(tmp_path / "r"),
        show_progress=False,
        argv=argv,
    )
    protocol = read_json(summary["protocol"])
    assert (
        protocol["command"]
        == "run_recbole_bbq.py --model=SASRec --seeds=1 --results_dir=r --learning_rate=0.01"
    )
    assert f"- Command: `{protocol['command']}`" in open(summary["markdown"], encoding="utf-8").read()
    # Only the options that configure cells are stored with them (not --model, --seeds, ...).
    record = run_json(tmp_path / "r" / "tiny", "SASRec", 1)
    assert record["settings"]["cmd_overrides"] == ["--learning_rate=0.01"]
    assert "garbage" not in json.dumps(protocol) + json.dumps(record["settings"])

    assert compare.CommandLine.of(None).text == "" and compare.CommandLine.of(None).overrides() == []


def ok_record(seed, ndcg, recall, valid, **extra):
    return {
        "status": "ok",
        "seed": seed,
        "test_result": {"ndcg@10": ndcg, "recall@10": recall},
        "best_valid_score": valid,
        **extra,
    }


def test_summary_mean_and_sample_std_of_hand_made_records():
    """The pandas summary gives the known mean and sample std (ddof=1), bit for bit numpy's."""
    records = {
        ("A", 1): ok_record(1, 0.1, 0.5, 0.2, stop_reason="early_stopping", epochs_trained=7),
        ("A", 2): ok_record(2, 0.2, 0.5, 0.4, stop_reason="time_budget", epochs_trained=3),
        ("A", 3): ok_record(3, 0.3, 0.5, 0.6),
        ("B", 1): ok_record(1, 0.25, 0.75, 0.125),
        ("B", 2): {"status": "failed", "error": "RuntimeError: boom"},
        ("B", 3): None,
    }
    a, b = summarize(["A", "B"], [1, 2, 3], records)

    assert a["mean"]["ndcg@10"] == pytest.approx(0.2) and a["std"]["ndcg@10"] == pytest.approx(0.1)
    assert a["mean"]["recall@10"] == 0.5 and a["std"]["recall@10"] == 0.0
    assert a["mean"]["valid"] == pytest.approx(0.4) and a["std"]["valid"] == pytest.approx(0.2)
    for metric, values in {"ndcg@10": [0.1, 0.2, 0.3], "valid": [0.2, 0.4, 0.6]}.items():
        assert a["mean"][metric] == float(np.mean(values))
        assert a["std"][metric] == float(np.std(values, ddof=1))
    assert a["values"]["ndcg@10"] == {1: 0.1, 2: 0.2, 3: 0.3}
    assert (a["status"], a["n_seeds"], a["seeds"], a["not_run"]) == ("ok", 3, [1, 2, 3], [])
    assert a["stop_reasons"] == ["early_stopping", "time_budget", None] and a["epochs"] == [7, 3, None]

    # One seed: the value as the mean, no std; a failed and a never-run seed.
    assert b["mean"] == {"ndcg@10": 0.25, "recall@10": 0.75, "valid": 0.125}
    assert b["std"] == {"ndcg@10": None, "recall@10": None, "valid": None}
    assert (b["status"], b["n_seeds"], b["error"], b["not_run"]) == ("partial", 1, "RuntimeError: boom", [3])

    (nothing,) = summarize(["C"], [1], {("C", 1): None})
    assert (nothing["status"], nothing["mean"], nothing["std"], nothing["values"]) == ("not run", {}, {}, {})


def test_a_variant_can_start_from_another_one():
    variants = {
        "BBQRec": {"learning_rate": 0.003, "tokenizer": {"epochs": 5, "use_club": True}},
        "BBQRec-no_club": {"base": "BBQRec", "tokenizer": {"use_club": False}},
        "BBQRec-no_club-beam": {"base": "BBQRec-no_club", "score_mode": "beam"},
    }
    model, overrides = resolve_variant("BBQRec-no_club-beam", variants, {"epochs": 2})
    assert model == "BBQRec"
    assert overrides == {
        "epochs": 2,
        "learning_rate": 0.003,
        "tokenizer": {"epochs": 5, "use_club": False},  # the section is updated, not replaced
        "score_mode": "beam",
    }
    with pytest.raises(ConfigError, match=r"compare_variants.b.base: 'a' makes a cycle of bases"):
        resolve_variant("a", {"a": {"base": "b"}, "b": {"base": "a"}}, {})
    with pytest.raises(ConfigError, match=r"compare_variants.a.base: 'nope' is not a compare_variants label"):
        resolve_variant("a", {"a": {"base": "nope"}}, {})


def test_weights_of_rows_must_match_their_source_but_for_evaluation_keys(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "run_pipeline", fake_pipeline())
    options = dict(config_dict=tiny_config(tmp_path), results_dir=tmp_path / "r", show_progress=False)

    def compare_with(variants, models):
        config_dict = {**options["config_dict"], "compare_variants": variants}
        return run_comparison(models, "tiny", [1], **{**options, "config_dict": config_dict})

    dense = {"model": "SASRec", "weights_of": "SASRec", "eval_batch_size": 7}
    with pytest.raises(
        ConfigError, match=r"compare_variants.x.weights_of: 'SASRec' must be a row listed before 'x'"
    ):
        compare_with({"x": dense}, ["x", "SASRec"])
    with pytest.raises(
        ConfigError, match=r"'x' may differ from 'SASRec' only in score_mode.*differs in learning_rate"
    ):
        compare_with({"x": {**dense, "learning_rate": 0.5}}, ["SASRec", "x"])
    with pytest.raises(ConfigError, match=r"differs in model GRU4Rec vs SASRec"):
        compare_with({"x": {**dense, "model": "GRU4Rec"}}, ["SASRec", "x"])
    with pytest.raises(ConfigError, match=r"'x' trains nothing itself"):
        compare_with({"x": dense, "y": {**dense, "weights_of": "x"}}, ["SASRec", "x", "y"])
    assert not (tmp_path / "r").exists()  # refused before any cell ran


def test_a_weights_of_row_fails_cleanly_without_its_source(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "run_pipeline", fake_pipeline(fail={("SASRec", 1)}))
    config_dict = {
        **tiny_config(tmp_path),
        "compare_variants": {"SASRec-eval": {"model": "SASRec", "weights_of": "SASRec"}},
    }
    summary = run_comparison(
        ["SASRec", "SASRec-eval"],
        "tiny",
        [1],
        config_dict=config_dict,
        results_dir=tmp_path / "r",
        show_progress=False,
    )
    record = summary["runs"]["SASRec-eval", 1]
    assert record["status"] == "failed" and record["weights_of"] == "SASRec"
    assert "weights_of 'SASRec': seed 1 has no finished run with a model file" in record["error"]


def test_weights_of_rows_evaluate_the_source_model_without_training(tmp_path, tiny_root, monkeypatch):  # noqa: F811
    """BBQRec in another score mode from the same weights: one training, and the beam row
    evaluated again reproduces the trained row's test values user by user."""
    trained = []

    def counting_pipeline(model, *args, **kwargs):
        trained.append(model)
        return run_pipeline(model, *args, **kwargs)

    monkeypatch.setattr(runner, "run_pipeline", counting_pipeline)
    config_dict = model_config(tmp_path, tiny_root, epochs=1, checkpoint_dir=str(tmp_path / "saved"))
    config_dict["compare_variants"] = {
        "BBQRec-again": {"model": "BBQRec", "weights_of": "BBQRec"},
        "BBQRec-dense": {"model": "BBQRec", "weights_of": "BBQRec", "score_mode": "dense"},
    }
    models = ["BBQRec", "BBQRec-again", "BBQRec-dense"]
    summary = run_comparison(
        models, "tiny", [1], config_dict=config_dict, results_dir=tmp_path / "r", show_progress=False
    )
    assert trained == ["BBQRec"]
    source, again, dense = (summary["runs"][label, 1] for label in models)
    assert all(r["status"] == "ok" for r in (source, again, dense)), [r.get("error") for r in (again, dense)]
    assert again["test_result"] == source["test_result"]
    assert again["test_per_user"] == source["test_per_user"]
    assert dense["weights_of"] == "BBQRec" and dense["model_file"] == source["model_file"]
    assert dense["epochs_trained"] == source["epochs_trained"] == 1
    assert dense["test_per_user"]["users"] == source["test_per_user"]["users"]
    assert dense["test_per_user"]["ndcg@10"] != source["test_per_user"]["ndcg@10"]  # scored differently
    report = open(summary["markdown"], encoding="utf-8").read()
    assert (
        "Not trained on their own: BBQRec-again (weights of BBQRec), BBQRec-dense (weights of BBQRec)."
        in report
    )
