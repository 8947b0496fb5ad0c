"""The search: rows, trials, their records and RecBole's HyperTuning (see :mod:`recbole_bbq.tuning`)."""

import glob
import json
import math
import os
import time
from dataclasses import dataclass
from logging import getLogger

import numpy as np

from recbole_bbq.checkpoint import plain_data
from recbole_bbq.errors import ConfigError

# hyperopt's random search and TPE. Exhaustive search is refused: its trial count is the size
# of the space, so rows would get different budgets.
TUNING_ALGORITHMS = ("random", "bayes")
SPACE_TYPES = ("choice", "uniform", "quniform", "loguniform")
# Config sections a search-space key may reach into with ``section.key``.
NESTED_SECTIONS = ("tokenizer", "rqvae", "behaviour")
SPACE_KEY = "tuning_space"
TRIAL_DIGEST_CHARS = 10
FAILED_TRIAL_SCORE = -1e9


@dataclass(frozen=True)
class TuningSettings:
    """The budget every row gets (the ``tuning`` section)."""

    trials: int
    algo: str
    seed: int
    epochs: int
    space_dir: str
    valid_metric: str  # the config's valid_metric, which ranks the trials

    @classmethod
    def from_config(cls, config, source="the config"):
        """Settings from a config whose ``tuning`` values the config checks already passed.

        Raises:
            ConfigError: The section or one of its keys is missing.
        """
        section = config["tuning"] or {}
        names = [name for name in cls.__dataclass_fields__ if name != "valid_metric"]
        missing = [name for name in names if name not in section]
        if missing:
            raise ConfigError(
                f"--tune needs a 'tuning' section with {', '.join(names)} in {source}; "
                f"missing: {', '.join(missing)} (see benchmarks/configs/tuning/scientific.yaml)"
            )
        return cls(
            **{name: section[name] for name in names}, valid_metric=str(config["valid_metric"]).lower()
        )


@dataclass(frozen=True)
class TuningRow:
    """One tuned row: its label, model class, fixed overrides and where its trials live."""

    label: str
    model: str
    overrides: dict
    trial_dir: str
    settings_digest: str


def read_search_space(path):
    """The ``tuning_space`` of ``path``, checked against the known config keys.

    Returns:
        dict: ``{type: {key: values}}`` as RecBole's ``HyperTuning(params_dict=...)`` takes it.

    Raises:
        ConfigError: The file is missing or malformed, a type or key is unknown, or a range is bad.
    """
    from recbole_bbq.config import read_config_file

    if not os.path.isfile(path):
        raise ConfigError(f"search space file {path} does not exist (one <label>.yaml per tuned row)")
    space = read_config_file(path).get(SPACE_KEY)
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"{path}: needs a non-empty '{SPACE_KEY}' mapping of {'/'.join(SPACE_TYPES)}")
    for kind, keys in space.items():
        if kind not in SPACE_TYPES:
            raise ConfigError(f"{path}: {SPACE_KEY}.{kind} is not one of {', '.join(SPACE_TYPES)}")
        if not isinstance(keys, dict) or not keys:
            raise ConfigError(f"{path}: {SPACE_KEY}.{kind} must map config keys to their values")
        for key, values in keys.items():
            _check_space_entry(path, kind, key, values)
    return space


def _check_space_entry(path, kind, key, values):
    from recbole_bbq.validation import known_keys, known_section_keys, unknown_key_error

    section, _, inner = key.rpartition(".")
    if section and (section not in NESTED_SECTIONS or inner not in known_section_keys(section)):
        raise ConfigError(f"{path}: '{key}' is not a key of the {'/'.join(NESTED_SECTIONS)} sections")
    if not section and key not in known_keys():
        raise unknown_key_error(key, path, known_keys())
    sizes = {"choice": None, "uniform": 2, "loguniform": 2, "quniform": 3}
    if not isinstance(values, list) or not values or (sizes[kind] and len(values) != sizes[kind]):
        shape = (
            "a non-empty list" if kind == "choice" else f"[{', '.join(['low', 'high', 'q'][: sizes[kind]])}]"
        )
        raise ConfigError(f"{path}: {SPACE_KEY}.{kind}.{key} must be {shape}, got {values!r}")
    if kind != "choice" and not values[0] < values[1]:
        raise ConfigError(f"{path}: {SPACE_KEY}.{kind}.{key} needs low < high, got {values!r}")


def trial_overrides(params, space, row, sections):
    """Config overrides of one trial: the row's, then the sampled ``params``.

    ``quniform`` values with an integral step become ints (the config checks refuse ``5.0`` for
    an integer key); ``section.key`` values update the row's resolved section (RecBole replaces a
    whole section, so the other keys of that section are kept explicitly).
    """
    integral = {k for k, v in space.get("quniform", {}).items() if float(v[2]).is_integer()}
    overrides = dict(row.overrides)
    for key, value in sorted(params.items()):
        value = int(value) if key in integral else plain_data(value)
        section, _, inner = key.rpartition(".")
        if section:
            overrides[section] = {**(overrides.get(section) or sections.get(section) or {}), inner: value}
        else:
            overrides[key] = value
    return overrides


def trial_digest(row, overrides, settings):
    """Digest of everything a trial's result depends on (reused trials must match it)."""
    from recbole_bbq.data.artifacts import sha256_of

    budget = {"epochs": settings.epochs, "seed": settings.seed}
    return sha256_of([row.settings_digest, row.model, overrides, budget])[:TRIAL_DIGEST_CHARS]


def stored_trial(row, number, digest):
    """The record of proposal ``number`` with ``digest``: stored, or copied from an earlier
    proposal of the same settings (random search may propose them twice), or None."""
    path = os.path.join(row.trial_dir, f"{number:03d}-{digest}.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    earlier = sorted(glob.glob(os.path.join(row.trial_dir, f"*-{digest}.json")))
    if not earlier:
        return None
    with open(earlier[0], encoding="utf-8") as f:
        record = json.load(f)
    record.update(duplicate_of=os.path.basename(earlier[0]), wall_time_s=0.0)
    write_trial(row, number, digest, record)
    return record


def stored_trials(trial_dir):
    """Every stored trial record of a row, in trial order."""
    records = []
    for path in sorted(glob.glob(os.path.join(trial_dir, "*.json"))):
        with open(path, encoding="utf-8") as f:
            records.append(json.load(f))
    return records


def write_trial(row, number, digest, record):
    """Store proposal ``number``'s record atomically as ``<number>-<digest>.json``."""
    from recbole_bbq.compare.store import write_json_atomic

    os.makedirs(row.trial_dir, exist_ok=True)
    write_json_atomic(os.path.join(row.trial_dir, f"{number:03d}-{digest}.json"), record)


def check_trials_match(row):
    """Refuse a trial folder filled under other config files or overrides (its trials would mix).

    Raises:
        ConfigError: A stored trial has another ``settings_digest``.
    """
    for record in stored_trials(row.trial_dir):
        if record.get("settings_digest") != row.settings_digest:
            raise ConfigError(
                f"{row.trial_dir} holds trials run under other config files or overrides; move it "
                "away (or use another --results_dir) to tune these settings"
            )


def run_trial(row, overrides, dataset, config_file_list, settings):
    """Train one trial on train, select on valid, never touch test; return its record."""
    from recbole_bbq.pipeline import run_pipeline

    config_dict = {**overrides, "epochs": settings.epochs, "seed": settings.seed}
    started = time.monotonic()
    record = {"label": row.label, "model": row.model, "settings_digest": row.settings_digest}
    record.update(overrides=overrides, status="ok")
    try:
        result = run_pipeline(row.model, dataset, config_file_list, config_dict, saved=False, test=False)
    except ConfigError:
        raise  # a bad value in the search space: every trial would fail the same way
    except Exception as error:  # a diverging trial (NaN loss, ...) is a result, not a stop
        record.update(status="failed", error=f"{type(error).__name__}: {error}", best_valid_score=None)
    else:
        record.update({key: result[key] for key in ("best_valid_score", "best_valid_result", "valid_curve")})
        record.update(stop_reason=result["stop_reason"], epochs_trained=result["epochs_trained"])
    record["wall_time_s"] = round(time.monotonic() - started, 1)
    return record


def trial_score(record):
    """A trial's valid score for ranking trials (a failed trial ranks last)."""
    score = record.get("best_valid_score")
    return -math.inf if score is None else float(score)


def _hyper_tuning_class():
    """RecBole's HyperTuning, seeded, without early stop, never printing a test result."""
    from recbole.trainer.hyper_tuning import HyperTuning

    class EqualBudgetTuning(HyperTuning):
        def __init__(self, objective, space, settings):
            # early_stop = trials: hyperopt's no-progress stop would give rows unequal budgets.
            super().__init__(
                objective,
                space=space,
                algo=settings.algo,
                max_evals=settings.trials,
                early_stop=settings.trials,
            )
            self.seed = settings.seed

        def run(self):
            from hyperopt import fmin

            fmin(
                self.trial,
                self.space,
                algo=self.algo,
                max_evals=self.max_evals,
                rstate=np.random.default_rng(self.seed),
                show_progressbar=False,
            )

        @staticmethod
        def _print_result(result_dict):
            getLogger().info(f"tuning: best valid score so far {result_dict['best_valid_score']:.4f}")

    return EqualBudgetTuning


def tune_row(row, dataset, config_file_list, settings):
    """Run (or resume) the search of one row; return its trial records in trial order."""
    from recbole.trainer.hyper_tuning import HyperTuning

    space = read_search_space(os.path.join(settings.space_dir, f"{row.label}.yaml"))
    check_trials_match(row)
    sections = _resolved_sections(row, dataset, config_file_list)
    logger = getLogger()

    proposals = iter(range(1, settings.trials + 1))

    def objective(params, _fixed_config_file_list=None):
        number, overrides = next(proposals), trial_overrides(params, space, row, sections)
        digest = trial_digest(row, overrides, settings)
        record = stored_trial(row, number, digest)
        if record is None:
            logger.info(f"tuning {row.label}: trial {number} of {settings.trials}: {_plain_dict(params)}")
            record = {
                "params": _plain_dict(params),
                **run_trial(row, overrides, dataset, config_file_list, settings),
            }
            write_trial(row, number, digest, record)
        # hyperopt's TPE needs finite losses: a failed trial counts as far below any real score.
        score = max(trial_score(record), FAILED_TRIAL_SCORE)
        return {
            "model": row.model,
            "best_valid_score": score,
            "valid_score_bigger": True,
            "test_result": None,
        }

    hyperopt_space = HyperTuning._build_space_from_dict(space)
    _hyper_tuning_class()(objective, hyperopt_space, settings).run()
    return stored_trials(row.trial_dir)


def _plain_dict(params):
    """hyperopt's draws (numpy scalars) as plain JSON values, sorted by key."""
    return plain_data(dict(sorted(params.items())))


def _resolved_sections(row, dataset, config_file_list):
    """The ``tokenizer``/``rqvae``/``behaviour`` sections as the row's config files set them."""
    from recbole_bbq.pipeline import stage_config

    config = stage_config(dataset, config_file_list, dict(row.overrides), model=row.model)
    return {section: dict(config[section] or {}) for section in NESTED_SECTIONS}


def tuning_rows(labels, dataset, config_file_list, out_dir):
    """The :class:`TuningRow` of every label (a model name or a ``compare_variants`` label)."""
    from recbole_bbq.compare.runner import load_variants, resolve_variant
    from recbole_bbq.data.artifacts import sha256_with_files

    variants = load_variants(config_file_list, {})
    rows = []
    for label in labels:
        model, overrides = resolve_variant(label, variants, {})
        digest = sha256_with_files(dataset, json.dumps(overrides, sort_keys=True), paths=config_file_list)
        trial_dir = os.path.join(out_dir, "tuning", label, "trials")
        rows.append(TuningRow(label, model, overrides, trial_dir, digest))
    return rows


def tuning_settings(rows, dataset, config_file_list):
    """The ``tuning`` section, validated with each row's whole config; the same for every row.

    Raises:
        ConfigError: A row's config is invalid, the section is missing or incomplete, a row's
            overrides change it, or a row's valid metric is not bigger-is-better.
    """
    from recbole_bbq.pipeline import check_model_name, model_config

    settings = None
    for row in rows:
        check_model_name(row.model)
        config = model_config(row.model, dataset, config_file_list, dict(row.overrides))
        if not config["valid_metric_bigger"]:
            raise ConfigError(
                f"--tune ranks trials by a bigger-is-better valid_metric, got {config['valid_metric']}"
            )
        row_settings = TuningSettings.from_config(config, " ".join(config_file_list or []) or "the config")
        if settings not in (None, row_settings):
            raise ConfigError(f"every tuned row must get the same 'tuning' budget; {row.label} changes it")
        settings = row_settings
    return settings


def run_tuning(labels, dataset, config_file_list=None, results_dir="results", report_only=False):
    """Tune every label with the same budget on valid; write ``tuning.md`` and ``tuned.yaml``.

    Args:
        labels (list[str]): Model names or ``compare_variants`` labels.
        dataset (str): Dataset name.
        config_file_list (list[str], optional): YAML files; one of them holds the ``tuning`` section.
        results_dir (str): Root of the results; tuning writes into ``<results_dir>/<dataset>/``.
        report_only (bool): Train nothing; rewrite the two files from the stored trials.

    Returns:
        dict: ``markdown`` and ``yaml`` (the paths written) and ``rows`` (label -> stored trials).
    """
    from recbole_bbq.tuning.report import write_tuning_reports

    out_dir = os.path.join(results_dir, dataset)
    rows = tuning_rows(labels, dataset, config_file_list, out_dir)
    settings = tuning_settings(rows, dataset, config_file_list)
    for row in rows:
        if not report_only:
            tune_row(row, dataset, config_file_list, settings)
        paths = write_tuning_reports(out_dir, settings, dataset)
    return {**paths, "rows": {row.label: stored_trials(row.trial_dir) for row in rows}}
