"""One validation pass over a resolved config, before any stage or training runs.

:func:`validate_config` checks every plugin key (and the RecBole training keys whose bad values
otherwise fail deep inside torch) against :data:`RULES`, then the keys that depend on each other,
then refuses user keys that nobody reads, with a did-you-mean suggestion. Every error is a
:class:`~recbole_bbq.errors.ConfigError` that names the key, its value, what is allowed and where
the value was set (a YAML file, ``config_dict`` or the command line).

The allowed values of the plugin's choice keys are imported from the code that reads them, so
the two cannot drift apart.
"""

import difflib
import glob
import os
from functools import lru_cache

import recbole
import yaml
from recbole.utils import ModelType, argument_list

from recbole_bbq.errors import ConfigError
from recbole_bbq.model.generative import ITEM_POSITIONS
from recbole_bbq.model.sequential_recommender.bbqrec import SCORE_MODES
from recbole_bbq.model.sequential_recommender.unisrec import ITEM_REPRS
from recbole_bbq.model.traits import model_traits
from recbole_bbq.resources import properties_dir
from recbole_bbq.rules import (
    boolean,
    choice,
    integer,
    integers,
    is_int,
    mapping,
    missing_policy,
    number,
    signal_pairs,
    string,
    string_or_strings,
    strings,
)
from recbole_bbq.schedule import SCHEDULES
from recbole_bbq.trainer import AMP_DTYPES
from recbole_bbq.tuning import TUNING_ALGORITHMS

# Top-level keys. RecBole keys are listed only where a bad value fails late or deep inside torch.
RULES = {
    # RecBole training keys
    "seed": integer(0),
    "epochs": integer(1),
    "learning_rate": number(0, low_open=True),
    "train_batch_size": integer(1),
    "eval_batch_size": integer(1),
    "weight_decay": number(0),
    "stopping_step": integer(1),
    # properties/overall.yaml
    "max_train_seconds": number(0, low_open=True, optional=True),
    "checkpoint_name": string(optional=True),
    "trust_checkpoint_files": boolean(),
    "compare_reference": string(optional=True),
    "lr_scheduler": choice(*SCHEDULES),
    "warmup": number(0),
    "min_lr_ratio": number(0, 1),
    "lr_schedule_epochs": integer(1, optional=True),
    "mixed_precision": choice(*AMP_DTYPES),
    "length_bucketing": boolean(),
    "bucket_batches": integer(1),
    "modalities": strings(),
    "modality_dims": mapping(optional=True),
    "feature_files": mapping(optional=True),
    "missing_feature_policy": missing_policy(),
    "semantic_ids_file": string(optional=True),
    "semantic_ids_key": string(optional=True),
    "catalogue_file": string(optional=True),
    "stage_wait_seconds": number(0),
    "semantic_id_vocab_sizes": integers(1, optional=True),
    "behaviour": mapping(optional=True),
    "tokenizer": mapping(optional=True),
    "rqvae": mapping(optional=True),
    "tuning": mapping(optional=True),
    # properties/model/*.yaml: the generative backbone (TIGER, MMTIGER, BBQRec)
    "d_model": integer(1),
    "n_layers": integer(1),
    "n_decoder_layers": integer(1),
    "n_heads": integer(1),
    "d_kv": integer(1),
    "d_ff": integer(1),
    "dropout_prob": number(0, 1, high_open=True),
    "history_length": integer(1, optional=True),
    "item_positions": choice(*ITEM_POSITIONS),
    "trim_padding": boolean(),
    "torch_compile": boolean(),
    "beam_size": integer(1),
    "semantic_ids_from": string_or_strings(optional=True),
    "mmtiger_modalities": strings(optional=True),
    # BBQRec and BBQSASRec
    "sim_attention": boolean(),
    "sim_buckets": integer(1),
    "sim_source": choice("cosine", "codes"),
    "sim_pairs": signal_pairs(optional=True),
    "s2i_weight": number(0),
    "s2i_temperature": number(0, low_open=True),
    "s2i_negatives": choice("all", "batch"),
    "score_mode": choice(*SCORE_MODES),
    "fusion_weight": number(0),
    # UniSRec
    "text_modality": string(),
    "item_repr": choice(*ITEM_REPRS),
    "n_exps": integer(1),
    "adaptor_dropout_prob": number(0, 1, high_open=True),
    "adaptor_noise": boolean(),
    "temperature": number(0, low_open=True),
    "lambda": number(0),
    "seq_item_weight": number(0),
    "item_drop_ratio": number(0, 1),
    "item_drop_coefficient": number(0, 1),
}

# properties/tokenizer/BBQ.yaml (the ``tokenizer`` section)
TOKENIZER_RULES = {
    "latent_dim": integer(1),
    "hidden_dim": integer(1),
    "levels": integer(1),
    "codebook_size": integer(2),
    "beta": number(0),
    "shared_codebook": boolean(),
    "fuse": strings(optional=True),
    "fuse_mode": choice("sum", "mean"),
    "temperature": number(0, low_open=True),
    "align_modalities": boolean(),
    "dropout": number(0, 1, high_open=True),
    "use_club": boolean(),
    "use_align": boolean(),
    "mi_weight": number(0),
    "align_weight": number(0),
    "epochs": integer(1),
    "batch_size": integer(1),
    "learning_rate": number(0, low_open=True),
    "club_learning_rate": number(0, low_open=True),
    "reseed_dead_codes": boolean(),
    "seed": integer(0),
}

# properties/tokenizer/RQVAE.yaml (the ``rqvae`` section)
RQVAE_RULES = {
    "modality": string(),
    "levels": integer(1),
    "codebook_size": integer(1),
    "latent_dim": integer(1),
    "hidden_dim": integer(1),
    "beta": number(0),
    "epochs": integer(1),
    "batch_size": integer(1),
    "learning_rate": number(0, low_open=True),
    "seed": integer(0),
}

# The ``tuning`` section (run_recbole_bbq.py --tune; recbole_bbq/tuning.py)
TUNING_RULES = {
    "trials": integer(1),
    "algo": choice(*TUNING_ALGORITHMS),
    "seed": integer(0),
    "epochs": integer(1),
    "space_dir": string(),
}

# Sections whose own keys are checked too: section -> rules of its keys. ``behaviour`` holds
# config keys of the behaviour SASRec, so any top-level key is known there.
SECTIONS = {"tokenizer": TOKENIZER_RULES, "rqvae": RQVAE_RULES, "behaviour": RULES, "tuning": TUNING_RULES}

# Keys RecBole 1.2.1 reads or sets with no YAML default: set by its Config or by run() for DDP,
# or read by some RecBole models without a default in their YAML.
RECBOLE_KEYS_WITHOUT_DEFAULTS = (
    "model",
    "dataset",
    "MODEL_TYPE",
    "MODEL_INPUT_TYPE",
    "eval_type",
    "device",
    "single_spec",
    "valid_neg_sample_args",
    "test_neg_sample_args",
    "local_rank",
    "world_size",
    "nproc",
    "ip",
    "port",
    "offset",
    "CROP_ITEM_SEQ",
    "CROP_ITEM_SEQ_LEN",
    "INVERSE_ITEM_SEQ",
    "MASK_INDEX",
    "MASK_ITEM_SEQ",
    "NEG_ITEMS",
    "POS_ITEMS",
    "REORDER_ITEM_SEQ",
    "cin",
    "contrast",
    "encoding",
    "eta",
    "feature_num",
    "has_residual",
    "norm",
    "sim",
    "tail_ratio",
    "token_num_threshold",
    "use_filter",
    "xgb_early_stopping_rounds",
)

# Options of run_recbole_bbq.py (RecBole's Config also reads every --key=value of the command
# line) and keys read from the YAML files outside Config (compare.load_variants).
ENTRY_POINT_KEYS = (
    "config_files",
    "stage",
    "seeds",
    "results_dir",
    "report_only",
    "group_offset",
    "model_file",
    "users",
    "histories",
    "k",
    "features",
    "output_file",
    "id_rows",
    "compare_variants",
    "tuning_space",
)


def _yaml_keys(pattern, recursive=False):
    keys = set()
    for path in glob.glob(pattern, recursive=recursive):
        with open(path, encoding="utf-8") as f:
            keys.update(yaml.safe_load(f) or {})
    return keys


@lru_cache(maxsize=None)
def known_keys():
    """Every key some part of RecBole or recbole_bbq reads (see the module docstring)."""
    recbole_properties = os.path.join(os.path.dirname(recbole.__file__), "properties")
    keys = {
        *argument_list.general_arguments,
        *argument_list.training_arguments,
        *argument_list.evaluation_arguments,
        *argument_list.dataset_arguments,
        *RECBOLE_KEYS_WITHOUT_DEFAULTS,
        *ENTRY_POINT_KEYS,
        *RULES,
    }
    for folder in ("", "model", "quick_start_config"):  # dataset/ holds download URLs too
        keys |= _yaml_keys(os.path.join(recbole_properties, folder, "*.yaml"))
    keys |= _yaml_keys(os.path.join(recbole_properties, "dataset", "sample.yaml"))
    keys |= _yaml_keys(os.path.join(properties_dir(), "**", "*.yaml"), recursive=True)
    return frozenset(keys)


@lru_cache(maxsize=None)
def known_section_keys(section):
    """Known keys inside ``section``: its rules plus its keys in any properties YAML file."""
    if SECTIONS[section] is RULES:
        return known_keys()
    keys = set(SECTIONS[section])
    for path in glob.glob(os.path.join(properties_dir(), "**", "*.yaml"), recursive=True):
        with open(path, encoding="utf-8") as f:
            keys.update((yaml.safe_load(f) or {}).get(section) or {})
    return frozenset(keys)


def closest(name, candidates):
    """Up to three of ``candidates`` closest to ``name`` (difflib), best first."""
    return difflib.get_close_matches(name, sorted(candidates), n=3, cutoff=0.6)


def alternatives(names):
    """``'a'``, ``'a' or 'b'``, ``'a', 'b' or 'c'``."""
    quoted = [repr(name) for name in names]
    return " or ".join(quoted) if len(quoted) < 3 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def unknown_key_error(key, source, known, section=None):
    """The :class:`ConfigError` of a key nobody reads, with the closest known keys."""
    prefix = f"{section}." if section else ""
    close = [prefix + name for name in closest(key, known)]
    hint = f"did you mean {alternatives(close)}?" if close else "no recbole_bbq or RecBole key is close to it"
    return ConfigError(f"unknown config key {prefix + key!r} (from {source}): {hint}")


def check_value(key, value, rule, source):
    if not rule.accepts(value):
        raise ConfigError(f"{key} must be {rule.allowed}, got {value!r} (from {source})")


def check_sections(values, source_of, check_unknown):
    """Keys inside the ``tokenizer``, ``rqvae`` and ``behaviour`` mappings."""
    for section, rules in SECTIONS.items():
        if not isinstance(values.get(section), dict):
            continue
        source = source_of(section)
        for key, value in values[section].items():
            name = f"{section}.{key}"
            if check_unknown(section) and key not in known_section_keys(section):
                raise unknown_key_error(key, source, known_section_keys(section), section)
            if key in rules:
                check_value(name, value, rules[key], source)


def _is_generative(model_class):
    return isinstance(model_class, type) and model_traits(model_class).generative


def check_beam_size(values, source_of, model_class):
    """Beam search ranks only ``beam_size`` items, so it must cover the largest cut-off."""
    topk = values.get("topk")
    largest = max(topk) if isinstance(topk, (list, tuple)) and topk else topk
    beam_size = values.get("beam_size")
    if not (_is_generative(model_class) and is_int(beam_size) and is_int(largest)):
        return
    if beam_size < largest:
        raise ConfigError(
            f"beam_size ({beam_size}) must be at least the largest topk ({largest}): beam search "
            f"only ranks beam_size items (beam_size from {source_of('beam_size')}, topk from "
            f"{source_of('topk')})"
        )


def _samples_negatives(train_neg_sample_args):
    return isinstance(train_neg_sample_args, dict) and train_neg_sample_args.get("distribution") not in (
        None,
        "none",
        "None",
    )


def check_negative_sampling(values, source_of, model_class):
    """RecBole's sequential losses: CE scores every item (no negatives), BPR needs one per row."""
    if values.get("MODEL_TYPE") != ModelType.SEQUENTIAL or hasattr(model_class, "input_type"):
        return
    loss_type, negatives = values.get("loss_type"), values.get("train_neg_sample_args")
    where = (
        f"loss_type from {source_of('loss_type')}, "
        f"train_neg_sample_args from {source_of('train_neg_sample_args')}"
    )
    if loss_type == "CE" and _samples_negatives(negatives):
        raise ConfigError(
            f"train_neg_sample_args must be ~ with loss_type: CE (CE scores every item), "
            f"got {negatives!r} ({where})"
        )
    if loss_type == "BPR" and not _samples_negatives(negatives):
        raise ConfigError(
            "loss_type: BPR needs one sampled negative per row: set train_neg_sample_args: "
            f"{{distribution: uniform, sample_num: 1}}, got {negatives!r} ({where})"
        )


CROSS_CHECKS = (check_beam_size, check_negative_sampling)


def _is_library_model(model_class):
    """Unknown keys are refused only for recbole_bbq and RecBole models: a user's own model
    class may read keys that no YAML here declares."""
    return getattr(model_class, "__module__", "").split(".")[0] in ("recbole", "recbole_bbq")


def validate_config(values, source_of, model_class, user_keys):
    """Check a resolved config; raise :class:`ConfigError` at the first problem.

    Args:
        values (dict): The merged config (RecBole's ``final_config_dict`` before its own checks).
        source_of (Callable[[str], str]): Where a key's value was set, e.g. ``file a.yaml``,
            ``the command line``, ``config_dict``.
        model_class (type): The model class the config is for.
        user_keys (Iterable[str]): Keys set in user YAML files, ``config_dict`` or on the command
            line; only these are checked against the known keys.

    Raises:
        ConfigError: Naming the key, its value, the allowed values and the source.
    """
    user_keys = set(user_keys)
    check_unknown = _is_library_model(model_class)
    unknown = sorted(user_keys - known_keys()) if check_unknown else []
    if unknown:
        raise unknown_key_error(unknown[0], source_of(unknown[0]), known_keys())
    for key, rule in RULES.items():
        if key in values:
            check_value(key, values[key], rule, source_of(key))
    check_sections(values, source_of, lambda section: check_unknown and section in user_keys)
    for check in CROSS_CHECKS:
        check(values, source_of, model_class)
