"""Plugin-aware RecBole configuration (the RecBole-GNN pattern)."""

import os

import recbole
import torch
import yaml
from recbole.config import Config as RecBoleConfig
from recbole.utils import ModelType

from recbole_bbq import compat
from recbole_bbq.errors import ConfigError
from recbole_bbq.resources import property_file
from recbole_bbq.utils import get_model
from recbole_bbq.validation import validate_config


def read_config_file(path, loader=yaml.FullLoader):
    """The mapping in YAML file ``path`` (an empty file is ``{}``).

    Raises:
        ConfigError: Naming the file when it is missing, unreadable, not YAML or not a mapping.
    """
    try:
        with open(path, "r", encoding="utf-8") as f:
            text = f.read()
    except OSError as error:
        raise ConfigError(f"config file {path}: cannot read it ({error.strerror or error})") from None
    try:
        content = yaml.load(text, Loader=loader)
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {_yaml_problem(error)}") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ConfigError(
            f"config file {path} must map keys to values (key: value lines), got a {type(content).__name__}"
        )
    return content


def _yaml_problem(error):
    """``<problem> at line L, column C`` of a YAML error (lines counted from 1)."""
    problem = getattr(error, "problem", None)
    mark = getattr(error, "problem_mark", None)
    if problem is None or mark is None:
        return " ".join(str(error).split())
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"


class Config(RecBoleConfig):
    """RecBole ``Config`` that knows the plugin's models and YAML defaults.

    Configuration layers, lowest priority first:

    1. RecBole's own internal defaults (``overall.yaml``, model and dataset YAML, quick-start YAML).
    2. ``properties/overall.yaml`` of recbole_bbq (the shared evaluation protocol).
    3. ``properties/model/<Model>.yaml`` of recbole_bbq.
    4. ``properties/dataset/<dataset>.yaml`` of recbole_bbq, then
       ``properties/dataset/<dataset>/<Model>.yaml`` (a model's budget on that dataset, e.g.
       BBQRec's CPU-sized defaults for the embedded ml-100k).
    5. ``<data_path>/<dataset>/<dataset>.yaml`` written by ``dataset_scripts/`` next to the data.
    6. User config files, then ``config_dict``, then ``--key=value`` on the command line.

    On CPU, multi-process runs use the gloo backend instead of RecBole's hard-coded nccl.

    Once merged, the config goes through :func:`recbole_bbq.validation.validate_config` before
    anything reads data, so a bad value stops the run at once with an error that names the key,
    the value and where it was set (:meth:`key_source`). A YAML file that is missing or malformed
    is a :class:`ConfigError` naming the file.
    """

    # Plugin keys that change the dataset object (RecBole compares these before reusing a saved one).
    PLUGIN_DATASET_KEYS = [
        "modalities",
        "modality_dims",
        "feature_files",
        "missing_feature_policy",
        "semantic_ids_file",
        "semantic_ids_key",
        "catalogue_file",
    ]

    def __init__(self, model=None, dataset=None, config_file_list=None, config_dict=None):
        # key -> where its value was set, for the user's layers and for the default layers.
        self.external_key_sources = {}
        self.internal_key_sources = {}
        super().__init__(model, dataset, config_file_list, config_dict)

    def key_source(self, key):
        """Where ``key``'s value comes from: ``file <path>``, ``config_dict`` or ``the command line``."""
        return (
            self.external_key_sources.get(key) or self.internal_key_sources.get(key) or "RecBole's defaults"
        )

    def _load_config_files(self, file_list):
        file_config_dict = {}
        for path in file_list or []:
            content = read_config_file(path, self.yaml_loader)
            file_config_dict.update(content)
            self.external_key_sources.update(dict.fromkeys(content, f"file {path}"))
        return file_config_dict

    def _load_variable_config_dict(self, config_dict):
        variable_config_dict = super()._load_variable_config_dict(config_dict)
        self.external_key_sources.update(dict.fromkeys(variable_config_dict, "config_dict"))
        return variable_config_dict

    def _load_cmd_line(self):
        try:
            cmd_config_dict = super()._load_cmd_line()
        except SyntaxError as error:  # RecBole's word for one --key given twice with two values
            raise ConfigError(f"command line: {error}") from None
        self.external_key_sources.update(dict.fromkeys(cmd_config_dict, "the command line"))
        return cmd_config_dict

    def _update_internal_config_dict(self, file):
        # Also reads <data_path>/<dataset>/<dataset>.yaml, a user-editable file.
        config_dict = read_config_file(file, self.yaml_loader)
        self.internal_config_dict.update(config_dict)
        self.internal_key_sources.update(dict.fromkeys(config_dict, f"file {os.path.normpath(file)}"))
        return config_dict

    def _get_final_config_dict(self):
        final_config_dict = super()._get_final_config_dict()
        self._set_sequential_negative_sampling(final_config_dict)
        validate_config(final_config_dict, self.key_source, self.model_class, self.external_config_dict)
        return final_config_dict

    def _set_sequential_negative_sampling(self, final_config_dict):
        """CE over all items needs no sampled negatives; RecBole's default (uniform, 1) would make
        every CE sequential model fail its config check. Decided on the merged config, so a user's
        ``loss_type: BPR`` keeps RecBole's sampling, and a user's own ``train_neg_sample_args`` is
        kept as given (validation refuses it with CE)."""
        if "train_neg_sample_args" in self.external_config_dict:
            return
        if (
            final_config_dict["MODEL_TYPE"] == ModelType.SEQUENTIAL
            and final_config_dict.get("loss_type") == "CE"
        ):
            final_config_dict["train_neg_sample_args"] = None

    def _init_parameters_category(self):
        super()._init_parameters_category()
        self.parameters["Dataset"] = self.parameters["Dataset"] + self.PLUGIN_DATASET_KEYS

    def compatibility_settings(self):
        # RecBole's own version assigns np.float_ etc., which no longer exist in numpy 2.
        compat.patch_numpy_aliases()

    def _get_model_and_dataset(self, model, dataset):
        if model is None:
            model = self.external_config_dict.get("model")
            if model is None:
                raise KeyError(
                    "model need to be specified in at least one of the these ways: "
                    "[model variable, config file, config dict, command line] "
                )
        if isinstance(model, str):
            final_model, final_model_class = model, get_model(model)
        else:
            final_model, final_model_class = model.__name__, model

        final_dataset = dataset if dataset is not None else self.external_config_dict.get("dataset")
        if final_dataset is None:
            raise KeyError(
                "dataset need to be specified in at least one of the these ways: "
                "[dataset variable, config file, config dict, command line] "
            )
        return final_model, final_model_class, final_dataset

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        model_type = self.internal_config_dict["MODEL_TYPE"]
        for path, is_dataset_file in self._plugin_config_files(model, dataset):
            if not os.path.isfile(path):
                continue
            config_dict = self._update_internal_config_dict(path) or {}
            if is_dataset_file:
                self.parameters["Dataset"] += [
                    key for key in config_dict if key not in self.parameters["Dataset"]
                ]
        # A plugin model YAML must not change what RecBole derived from the model class.
        self.internal_config_dict["MODEL_TYPE"] = model_type

    def _plugin_config_files(self, model, dataset):
        """Return ``(path, is_dataset_file)`` for every plugin YAML layer, lowest priority first."""
        data_root = self.external_config_dict.get(
            "data_path", self.internal_config_dict.get("data_path", "dataset/")
        )
        return [
            *[(path, False) for path in self._inherited_recbole_model_files()],
            (property_file("overall.yaml"), False),
            (property_file("model", f"{model}.yaml"), False),
            (property_file("dataset", f"{dataset}.yaml"), True),
            (property_file("dataset", dataset, f"{model}.yaml"), True),
            (os.path.join(data_root, dataset, f"{dataset}.yaml"), True),
        ]

    def _inherited_recbole_model_files(self):
        """RecBole YAML of the RecBole models a plugin model subclasses (e.g. SASRec's for BBQSASRec)."""
        if self.model_class.__module__.startswith("recbole.model."):
            return []  # RecBole already loaded this model's own YAML
        model_dir = os.path.join(os.path.dirname(recbole.__file__), "properties", "model")
        bases = [
            c for c in reversed(self.model_class.__mro__[1:]) if c.__module__.startswith("recbole.model.")
        ]
        return [os.path.join(model_dir, f"{c.__name__}.yaml") for c in bases]

    def _set_default_parameters(self):
        data_root = self.final_config_dict["data_path"]
        super()._set_default_parameters()
        # RecBole points ml-100k at the read-only copy inside site-packages; we keep it under
        # data_path like every other dataset, so derived files (text features) can live beside it.
        self.final_config_dict["data_path"] = os.path.join(data_root, self.dataset)

    def _init_device(self):
        gpu_id = self.final_config_dict["gpu_id"]
        if isinstance(gpu_id, tuple):
            gpu_id = ",".join(map(str, gpu_id))
        use_cuda = (
            self.final_config_dict.get("use_gpu", True) and len(str(gpu_id)) > 0 and torch.cuda.is_available()
        )
        if use_cuda or "local_rank" not in self.final_config_dict:
            if not use_cuda:
                self.final_config_dict["gpu_id"] = ""
            super()._init_device()
            return
        self._init_cpu_distributed()

    def _init_cpu_distributed(self):
        """Join a multi-process CPU group with gloo (RecBole hard-codes nccl)."""
        cfg = self.final_config_dict
        cfg["gpu_id"] = ""
        if not torch.distributed.is_initialized():
            torch.distributed.init_process_group(
                backend="gloo",
                rank=cfg["local_rank"] + cfg["offset"],
                world_size=cfg["world_size"],
                init_method=f"tcp://{cfg['ip']}:{cfg['port']}",
            )
        cfg["device"] = torch.device("cpu")
        cfg["single_spec"] = False
        if cfg["local_rank"] != 0:
            cfg["state"] = "error"
            cfg["show_progress"] = False
            cfg["verbose"] = False
