"""Cached artifacts in a dataset folder, and pruning the ones that no current config uses.

The pipeline stages key their outputs by a hash of their inputs and settings, so a changed input
leaves the old file behind. These keyed files are the *artifacts* (``<dataset>`` = file prefix):

* ``<dataset>.behaviour-<key>.npz``: behaviour vectors (:mod:`recbole_bbq.tokenizer.behaviour`).
* ``<dataset>.bbq-<key>.sid.npz`` and its ``<dataset>.bbq-<key>.usage.png`` plot: the BBQ
  tokenizer artifact (:mod:`recbole_bbq.tokenizer.stage`).
* ``<dataset>.tiger-<key>.sid.npz`` / ``<dataset>.mmtiger-<key>.sid.npz``: TIGER / MMTIGER
  semantic IDs (:mod:`recbole_bbq.tokenizer.rqvae`).
* ``<artifact>.tokenizer.pth`` beside a fitted ``.sid.npz``: the fitted tokenizer that
  :func:`recbole_bbq.catalogue.add_items` encodes new items with
  (:mod:`recbole_bbq.tokenizer.saved`). A model file refers to its artifacts by path: prune
  only once no saved model you still serve uses them.
* Orphaned temporary files ``.<name>.*.tmp<ext>`` of killed writers
  (:func:`recbole_bbq.data.io.stale_temp_files_in`).

Inputs are never listed: atomic files, the dataset YAML, feature files ``<dataset>.<modality>.npz``
and published semantic IDs ``<dataset>.<name>.sid.npz``.

Usage (what ``run_recbole_bbq.py --prune-cache --dataset=NAME`` calls)::

    from recbole_bbq.cache import prune_cache
    prune_cache("Scientific", ["my.yaml"])                 # dry run: the files it would remove
    prune_cache("Scientific", ["my.yaml"], dry_run=False)  # removes them; returns what it removed
"""

import os
import re
from dataclasses import dataclass, field
from logging import getLogger

from recbole_bbq.data.artifacts import KEY_CHARS
from recbole_bbq.data.io import is_temp_file_name, stale_temp_files_in
from recbole_bbq.errors import ConfigError, RecBoleBBQError

# kind -> file endings of that kind's artifacts (the key sits between "<kind>-" and the ending).
ARTIFACT_ENDINGS = {
    "behaviour": (".npz",),
    "bbq": (".sid.npz", ".usage.png", ".tokenizer.pth"),
    "tiger": (".sid.npz", ".tokenizer.pth"),
    "mmtiger": (".sid.npz", ".tokenizer.pth"),
}
_KEY = re.compile(rf"^[0-9a-f]{{{KEY_CHARS}}}$")


def artifact_kind(file_name, dataset):
    """The kind (``behaviour``, ``bbq``, ``tiger``, ``mmtiger``) of an artifact file name, or None.

    Args:
        file_name (str): A file name (no folder).
        dataset (str): The dataset name, i.e. the file prefix.
    """
    prefix = f"{dataset}."
    if not file_name.startswith(prefix):
        return None
    rest = file_name[len(prefix) :]
    for kind, endings in ARTIFACT_ENDINGS.items():
        for ending in endings:
            if rest.startswith(f"{kind}-") and rest.endswith(ending):
                if _KEY.match(rest[len(kind) + 1 : -len(ending)]):
                    return kind
    return None


def is_prunable(path, dataset=None):
    """True for an artifact file name (see the module docstring) or a temporary file."""
    name = os.path.basename(path)
    dataset = dataset or os.path.basename(os.path.dirname(os.path.abspath(path)))
    return artifact_kind(name, dataset) is not None or is_temp_file_name(name)


def find_unused_artifacts(dataset_dir, keep, dataset=None, protected_kinds=()):
    """Artifacts in ``dataset_dir`` that are not in ``keep``, plus orphaned temporary files.

    Args:
        dataset_dir (str): The dataset folder (``<data_path>/<dataset>``).
        keep (Iterable[str]): Artifact paths in use; a kept ``.sid.npz`` also keeps its plot.
        dataset (str, optional): The file prefix; default the folder name.
        protected_kinds (Iterable[str]): Kinds whose use could not be determined: none of
            their files is listed.

    Returns:
        list[str]: Paths, sorted.
    """
    dataset = dataset or os.path.basename(os.path.normpath(dataset_dir))
    keep = {os.path.abspath(path) for path in keep}
    beside = (".usage.png", ".tokenizer.pth")  # a kept artifact's plot and fitted tokenizer
    keep |= {path[: -len(".sid.npz")] + end for path in keep if path.endswith(".sid.npz") for end in beside}
    unused = []
    for name in sorted(os.listdir(dataset_dir)) if os.path.isdir(dataset_dir) else []:
        path = os.path.abspath(os.path.join(dataset_dir, name))
        kind = artifact_kind(name, dataset)
        if kind and kind not in protected_kinds and path not in keep and os.path.isfile(path):
            unused.append(path)
    return sorted(unused + stale_temp_files_in(os.path.abspath(dataset_dir)))


def prune_artifacts(paths, dry_run=True):
    """Remove artifact files (a dry run removes nothing).

    Args:
        paths (Iterable[str]): What :func:`find_unused_artifacts` returned.
        dry_run (bool): Only return what would be removed.

    Returns:
        list[str]: The files removed (or, in a dry run, that would be).

    Raises:
        ConfigError: For a path that is not an artifact or temporary file, before anything is
            removed: this never deletes inputs.
    """
    paths = list(paths)
    foreign = [path for path in paths if not is_prunable(path)]
    if foreign:
        raise ConfigError(f"{foreign[0]}: not a cached artifact or temporary file; nothing was removed")
    if dry_run:
        return paths
    removed = []
    for path in paths:
        try:
            os.remove(path)
        except FileNotFoundError:  # removed meanwhile (another prune, or a rebuild)
            continue
        removed.append(path)
    return removed


# --------------------------------------------------------------------------- current artifacts


@dataclass
class ArtifactUse:
    """The artifacts the current configs use.

    Attributes:
        data_dir (str): The dataset folder.
        keep (set[str]): Artifact paths in use (they need not exist yet).
        protected (dict[str, str]): Kind -> why its use could not be determined; nothing of that
            kind is pruned.
    """

    data_dir: str = ""
    keep: set = field(default_factory=set)
    protected: dict = field(default_factory=dict)


def behaviour_artifact(config):
    """``(path, key)`` of the behaviour vectors ``config`` needs, without training anything.

    The same preparation as :func:`recbole_bbq.tokenizer.behaviour.behaviour_embeddings` before
    its cache lookup.
    """
    from recbole_bbq.tokenizer.behaviour import prepare_behaviour_run

    run = prepare_behaviour_run(config)
    return run.path, run.key


def _require_feature_files(config):
    """Raise instead of letting the dataset hook create a missing feature file (an encoder run)."""
    from recbole_bbq.data.features import configured_feature_path

    for modality in config["modalities"] or []:
        path = configured_feature_path(config, modality)
        if not os.path.isfile(path):
            raise ConfigError(f"modality '{modality}' has no feature file {path}")


def bbq_artifacts(config):
    """Behaviour vectors and BBQ tokenizer artifact that ``config`` needs, without training."""
    from recbole_bbq.tokenizer.stage import tokenizer_artifact_path, tokenizer_features

    _require_feature_files(config)
    behaviour_path, behaviour_key = behaviour_artifact(config)
    _, item_tokens, features = tokenizer_features(config)
    path, _ = tokenizer_artifact_path(config, item_tokens, features, behaviour_key)
    return [behaviour_path, path]


def tiger_artifacts(config, kind):
    """The TIGER or MMTIGER semantic-ID file ``config`` needs, without fitting an RQ-VAE.

    Uses the key of :func:`recbole_bbq.tokenizer.rqvae.tiger_semantic_ids`.
    """
    from recbole_bbq.data import SequentialDataset
    from recbole_bbq.tokenizer.rqvae import code_sources, tiger_artifact

    item_tokens = [str(t) for t in SequentialDataset(config).field2id_token[config["ITEM_ID_FIELD"]][1:]]
    sources = code_sources(config, kind, item_tokens, show_progress=False)
    return [tiger_artifact(config, kind, sources, item_tokens)[0]]


def used_artifacts(dataset, config_file_list=None, config_dict=None):
    """The artifacts that the semantic-ID models need under the current config files.

    Every plugin model with a ``semantic_ids`` trait gets the config that its
    pipeline stages would use; keys are computed as the stages compute them, but nothing is
    trained or encoded. A model whose inputs are not available (no feature file, no modalities)
    protects its kinds instead, so nothing of them is pruned.

    Returns:
        ArtifactUse: The dataset folder, the artifact paths in use and the protected kinds.
    """
    from recbole_bbq.model.traits import model_traits
    from recbole_bbq.pipeline import stage_config
    from recbole_bbq.utils import plugin_model_names

    use = ArtifactUse()
    for model in plugin_model_names():
        kind = model_traits(model).semantic_ids
        if kind is None:
            continue
        config = stage_config(dataset, config_file_list, config_dict, model=model)
        use.data_dir = config["data_path"]
        kinds = ("behaviour", "bbq") if kind == "bbq" else (kind,)
        try:
            paths = bbq_artifacts(config) if kind == "bbq" else tiger_artifacts(config, kind)
        except RecBoleBBQError as error:
            use.protected.update({k: f"{model}: {error}" for k in kinds})
            continue
        use.keep.update(os.path.abspath(path) for path in paths)
    return use


def prune_cache(dataset, config_file_list=None, dry_run=True, config_dict=None):
    """List, or remove, the artifacts of ``dataset`` that no current config uses.

    "Current" means the configs that :func:`recbole_bbq.pipeline.run_pipeline` would build from
    ``config_file_list`` (and ``config_dict``) for each semantic-ID model; artifacts that other
    config files need are not known here, so run the dry run first and read the list.

    Args:
        dataset (str): Dataset name.
        config_file_list (list[str], optional): YAML files, as for a run.
        dry_run (bool): Only return the files that would be removed (the default).
        config_dict (dict, optional): Further overrides, as for a run.

    Returns:
        list[str]: The files removed (or, in a dry run, that would be), sorted.
    """
    logger = getLogger()
    use = used_artifacts(dataset, config_file_list, config_dict)
    for kind, reason in sorted(use.protected.items()):
        logger.warning(f"prune-cache: keeping every '{kind}' artifact ({reason})")
    unused = find_unused_artifacts(use.data_dir, use.keep, dataset, protected_kinds=use.protected)
    return prune_artifacts(unused, dry_run=dry_run)
