"""Comparison rows that evaluate another row's trained weights (``weights_of: <row>``).

Such a row trains nothing: for each seed it evaluates the named row's saved model of that seed,
changing evaluation settings only, so a paired per-user test isolates how the model scores (e.g.
BBQRec's ``score_mode``).
"""

import os

from recbole_bbq.compare.store import is_ok, read_run, run_file
from recbole_bbq.errors import ConfigError

# A variant key: evaluate the weights another row trained (same seed) instead of training.
WEIGHTS_OF = "weights_of"
# The only keys a ``weights_of`` row may set differently from its source: they act at evaluation.
EVALUATION_KEYS = ("score_mode", "fusion_weight", "beam_size", "eval_batch_size")


def check_weights_of(comparison, variants):
    """Check every ``weights_of`` row: its source is an earlier row of the same model class, and
    the two differ only in :data:`EVALUATION_KEYS` (so the source's weights are this row's).

    Raises:
        ConfigError: Naming the row and what is wrong.
    """
    from recbole_bbq.compare.runner import resolve_variant

    for position, label in enumerate(comparison.models):
        model, cell_dict = resolve_variant(label, variants, comparison.config_dict)
        source = cell_dict.pop(WEIGHTS_OF, None)
        if source is None:
            continue
        where = f"compare_variants.{label}.{WEIGHTS_OF}"
        if source not in comparison.models[:position]:
            raise ConfigError(f"{where}: '{source}' must be a row listed before '{label}' in this comparison")
        source_model, source_dict = resolve_variant(source, variants, comparison.config_dict)
        if source_dict.pop(WEIGHTS_OF, None) is not None:
            raise ConfigError(f"{where}: '{source}' trains nothing itself (it has {WEIGHTS_OF} too)")
        changed = sorted(
            k
            for k in {*cell_dict, *source_dict} - set(EVALUATION_KEYS)
            if cell_dict.get(k) != source_dict.get(k)
        )
        if model != source_model or changed:
            what = f"model {model} vs {source_model}" if model != source_model else ", ".join(changed)
            raise ConfigError(
                f"{where}: '{label}' may differ from '{source}' only in {', '.join(EVALUATION_KEYS)}; "
                f"it differs in {what}"
            )


def finished_source_run(out_dir, source, seed):
    """The stored record of the finished cell (``source``, ``seed``) of a ``weights_of`` row.

    Raises:
        RuntimeError: The cell has not finished, or its model file is gone.
    """
    path = run_file(out_dir, source, seed)
    record = read_run(path)
    if not is_ok(record) or not record.get("model_file"):
        raise RuntimeError(
            f"{WEIGHTS_OF} '{source}': seed {seed} has no finished run with a model file ({path})"
        )
    if not os.path.isfile(record["model_file"]):
        raise RuntimeError(
            f"{WEIGHTS_OF} '{source}': the model file {record['model_file']} of {path} is gone"
        )
    return record
