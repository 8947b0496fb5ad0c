"""Dataset classes: RecBole's sequential dataset with fixes, and the multi-modal hook."""

import os

import pandas as pd
import torch
from recbole.data.dataset import SequentialDataset as RecBoleSequentialDataset
from recbole.utils import FeatureSource, FeatureType

from recbole_bbq.data.artifacts import check_building_allowed, check_cache_key
from recbole_bbq.data.atomic_files import AtomicFileRules, check_atomic_file
from recbole_bbq.data.catalogue import append_items, read_catalogue_file, with_added_rows
from recbole_bbq.data.embedded import EMBEDDED_DATASETS, ensure_embedded_dataset
from recbole_bbq.data.features import align_to_items, configured_feature_path, read_feature_file
from recbole_bbq.data.semantic_ids import (
    align_codes,
    read_extra_arrays,
    read_semantic_id_file,
)
from recbole_bbq.errors import ConfigError, DataError

# Atomic files that are checked line by line before RecBole reads them.
_CHECKED_SOURCES = (FeatureSource.INTERACTION, FeatureSource.USER, FeatureSource.ITEM)


class SequentialDataset(RecBoleSequentialDataset):
    """RecBole's ``SequentialDataset`` that keeps the *last* ``MAX_ITEM_LIST_LENGTH`` items.

    With pre-split ``benchmark_filename`` files, RecBole 1.2.1 keeps histories of any length
    (its ``seq_len`` option would keep the *first* items), and SASRec's position embedding then
    fails with "index out of range". Used for every sequential model run through recbole_bbq.
    Embedded datasets (ml-100k) are copied into ``data_path`` instead of being downloaded.

    Every ``.inter``, ``.user`` and ``.item`` file is checked line by line before RecBole reads
    it (:func:`recbole_bbq.data.atomic_files.check_atomic_file`): a bad byte, an unknown column
    type, a row with missing fields, a non-numeric or empty float in an interaction file, an
    empty history or a header-only interaction file is a :class:`DataError` naming the file and
    line, not a pandas traceback, a silently imputed timestamp or a crash during training.
    """

    def _load_data(self, token, dataset_path):
        ensure_embedded_dataset(dataset_path, token)
        super()._load_data(token, dataset_path)

    def _atomic_file_rules(self, source):
        """What :func:`check_atomic_file` enforces for a file of ``source``."""
        load_col, unload_col = self._get_load_and_unload_col(source)
        suffix = self.config["LIST_SUFFIX"]
        item_aliases = [self.iid_field, *(self.config["alias_of_item_id"] or [])]
        return AtomicFileRules(
            loaded=lambda name: (
                (load_col is None or name in load_col) and not (unload_col and name in unload_col)
            ),
            interactions=source == FeatureSource.INTERACTION,
            required={field for field in (self.uid_field, self.iid_field) if field},
            histories={
                f"{self.iid_field}{suffix}",
                *(name for name in item_aliases if name.endswith(suffix)),
            },
            separator=self.config["field_separator"],
            seq_separator=self.config["seq_separator"],
            encoding=self.config["encoding"] or "utf-8",
        )

    def _read_checked_feat(self, filepath, source):
        """RecBole's ``_load_feat`` after :func:`check_atomic_file`; pandas errors name the file."""
        if source not in _CHECKED_SOURCES or self._get_load_and_unload_col(source)[0] == set():
            return super()._load_feat(filepath, source)  # a file RecBole does not read
        check_atomic_file(filepath, self._atomic_file_rules(source))
        try:
            return super()._load_feat(filepath, source)
        except (ValueError, pd.errors.ParserError) as error:
            raise DataError(f"{filepath}: RecBole cannot read this atomic file ({error})") from None

    def _load_feat(self, filepath, source):
        df = self._read_checked_feat(filepath, source)
        if df is None or self.config["benchmark_filename"] is None:
            return df
        max_len = self.config["MAX_ITEM_LIST_LENGTH"]
        for field in df.columns:
            if field.endswith(self.config["LIST_SUFFIX"]) and self.field2type[field] in (
                FeatureType.TOKEN_SEQ,
                FeatureType.FLOAT_SEQ,
            ):
                df[field] = [seq[-max_len:] for seq in df[field].values]
                self.field2seqlen[field] = min(self.field2seqlen[field], max_len)
        return df


class MultiModalSequentialDataset(SequentialDataset):
    """Sequential dataset with per-item modality features and, on request, semantic IDs.

    Config keys (see ``properties/overall.yaml``):

    * ``modalities`` (list[str]): modalities to attach, e.g. ``[text, image]``.
    * ``modality_dims`` (dict): expected dimension per modality (checked when given).
    * ``feature_files`` (dict): per-modality file path; default ``<data_path>/<dataset>.<m>.npz``.
    * ``missing_feature_policy`` (str | dict): ``error`` or ``zero`` for items without a row.
    * ``semantic_ids_file`` (str): a semantic-ID file or BBQ tokenizer artifact to attach.
    * ``semantic_ids_key`` (str): its expected cache key (a stale artifact is an error).
    * ``catalogue_file`` (str): items added after training (:mod:`recbole_bbq.data.catalogue`):
      appended to the item vocabulary, with their feature rows taken from that file.

    Attributes:
        item_features (dict[str, torch.Tensor]): ``[n_items, d]`` float32 per modality, row 0 = padding.
        item_feature_missing (dict[str, torch.Tensor]): ``[n_items]`` bool per modality.
        item_semantic_ids (torch.Tensor | None): ``[n_items, L]`` codes after
            :meth:`attach_semantic_ids`.
    """

    def __init__(self, config):
        super().__init__(config)
        self.item_features, self.item_feature_missing = {}, {}
        self.item_semantic_ids = None
        self.added_item_features = {}
        if config["catalogue_file"]:
            tokens, self.added_item_features = read_catalogue_file(config["catalogue_file"])
            append_items(self, tokens, config["catalogue_file"])
        for modality in self.modalities:
            self._attach_modality(modality)
        if config["semantic_ids_file"]:
            self.attach_semantic_ids(config["semantic_ids_file"], expected_key=config["semantic_ids_key"])

    @property
    def modalities(self):
        return list(self.config["modalities"] or [])

    def item_tokens(self):
        """Item tokens indexed by RecBole's internal item id (index 0 is ``[PAD]``)."""
        return self.field2id_token[self.iid_field]

    def feature_file(self, modality):
        """Path of ``modality``'s feature file (``feature_files`` key or the default name)."""
        return configured_feature_path(self.config, modality)

    def _missing_policy(self, modality):
        policy = self.config["missing_feature_policy"] or "error"
        return policy.get(modality, "error") if isinstance(policy, dict) else policy

    def _attach_modality(self, modality):
        path = self.feature_file(modality)
        if not os.path.isfile(path):
            self._create_missing_feature_file(modality, path)
        expected_dim = (self.config["modality_dims"] or {}).get(modality)
        features, missing = align_to_items(
            with_added_rows(read_feature_file(path), self.added_item_features.get(modality)),
            self.item_tokens(),
            expected_dim=expected_dim,
            missing_policy=self._missing_policy(modality),
        )
        self.item_features[modality] = features
        self.item_feature_missing[modality] = missing
        self.logger.info(
            f"modality [{modality}]: {tuple(features.shape)} from {path}, "
            f"{int(missing[1:].sum())} items without a real row"
        )

    def _create_missing_feature_file(self, modality, path):
        """Embedded datasets get text vectors automatically; anything else is an error."""
        if modality == "text" and self.dataset_name in EMBEDDED_DATASETS:
            from recbole_bbq.data.text_encoder import encode_dataset_text

            check_building_allowed(path)

            self.logger.info(f"encoding item text of [{self.dataset_name}] (first run only)")
            created = encode_dataset_text(self.config["data_path"], self.dataset_name)
            if os.path.abspath(created) == os.path.abspath(path):
                return
        encoder_script = "encode_text.py" if modality == "text" else "encode_images.py"
        raise ConfigError(
            f"modality '{modality}' is listed in 'modalities' but its feature file {path} does "
            f"not exist; create it with dataset_scripts/{encoder_script} "
            f"or set feature_files.{modality}"
        )

    def attach_semantic_ids(self, path, require_unique=True, expected_key=None):
        """Load a semantic-ID file (or BBQ tokenizer artifact) lined up with the internal ids.

        Args:
            path (str): A ``.sid.npz`` file (see :mod:`recbole_bbq.data.semantic_ids`).
            require_unique (bool): Reject files in which two items share a code tuple.
            expected_key (str, optional): Reject an artifact built for another config or data.

        Returns:
            torch.Tensor: ``[n_items, L]`` int64 codes, row 0 = padding. Tokenizer artifacts also
            fill ``item_signal_codes`` and ``item_quantized`` (per signal, row 0 = padding).
        """
        tokens, codes, meta = read_semantic_id_file(path)
        check_cache_key(path, meta, expected_key)
        self.item_semantic_ids = align_codes(path, tokens, codes, self.item_tokens(), require_unique)
        self.semantic_id_meta = meta
        rows = self.item_semantic_id_rows(tokens)
        self.item_signal_codes, self.item_quantized = {}, {}
        for name, array in read_extra_arrays(path).items():
            kind, signal = name.split("_", 1)
            aligned = torch.zeros((len(rows), *array.shape[1:]), dtype=torch.as_tensor(array).dtype)
            aligned[1:] = torch.as_tensor(array)[rows[1:]]
            (self.item_signal_codes if kind == "codes" else self.item_quantized)[signal] = aligned
        return self.item_semantic_ids

    def item_semantic_id_rows(self, tokens):
        """Row of every internal item id in a file listing ``tokens`` (row 0 = padding -> 0)."""
        row_of = {token: row for row, token in enumerate(tokens)}
        return torch.as_tensor([0] + [row_of[t] for t in self.item_tokens()[1:]], dtype=torch.long)
