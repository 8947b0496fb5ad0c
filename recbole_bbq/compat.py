"""Compatibility fixes for RecBole 1.2.1 on current numpy / torch / torchvision.

Import this module before anything imports ``recbole`` or ``torchvision``. It only adds
missing names or registers an empty module; it never edits installed files.

* numpy 2 removed ``np.float``, ``np.int``, ... which RecBole's metrics and dataset code use.
* PyPI torchvision next to a ``+cpu`` torch wheel fails with
  ``operator torchvision::nms does not exist`` while importing ``torchvision._meta_registrations``.
  That module only registers meta kernels for tracing, so an empty stand-in is safe.
* ``recbole.quick_start`` imports ray at import time; recbole_bbq never imports it
  (see :mod:`recbole_bbq.quick_start`).
* ``recbole.model.sequential_recommender.sine`` calls ``torch.autograd.set_detect_anomaly(True)``
  at import time, which makes every model 2-3x slower (a NaN check after each autograd op).
  :func:`disable_recbole_anomaly_detection` imports RecBole's models once and switches it off.
* RecBole's dataset and trainer code trigger pandas/torch ``FutureWarning`` s on every run (chained
  assignment, ``Series.agg(len)``, ``torch.cuda.amp.GradScaler``); they are not actionable for
  users and bury our output, so FutureWarnings raised from ``recbole.*`` modules are hidden.
* ``torch.load`` defaults to ``weights_only=True`` on torch >= 2.6, which rejects RecBole
  checkpoints (they pickle the Config). :mod:`recbole_bbq.trainer` keeps that safe default: it
  saves checkpoints as tensors and plain data, and unpickles other files only with the
  ``trust_checkpoint_files`` opt-in, never by changing the process-wide default.
"""

import sys
import types
import warnings

import numpy as np

_NUMPY_ALIASES = {
    "bool": "bool_",
    "int": "int_",
    "float": "float64",
    "complex": "complex128",
    "object": "object_",
    "str": "str_",
    "long": "int_",
    "unicode": "str_",
}


def patch_numpy_aliases():
    """Re-create the numpy aliases removed in numpy 2 that RecBole still uses."""
    for alias, target in _NUMPY_ALIASES.items():
        if alias not in np.__dict__:
            setattr(np, alias, getattr(np, target))
    # RecBole's Config.compatibility_settings() reads these and fails on numpy 2.
    for alias, target in {"float_": "float64", "complex_": "complex128"}.items():
        if alias not in np.__dict__:
            setattr(np, alias, getattr(np, target))


def torch_is_cpu_build():
    """Return True for a ``+cpu`` torch wheel (the one that breaks PyPI torchvision)."""
    import torch

    return "+cpu" in torch.__version__


def patch_torchvision_meta_registrations():
    """Let PyPI torchvision import beside a CPU-only torch build.

    Only applied when torch is a ``+cpu`` build and torchvision was not imported yet.
    """
    name = "torchvision._meta_registrations"
    if "torchvision" in sys.modules or name in sys.modules:
        return
    if not torch_is_cpu_build():
        return
    sys.modules[name] = types.ModuleType(name)


def disable_recbole_anomaly_detection():
    """Import RecBole's model packages, then undo SINE's process-wide anomaly detection."""
    import recbole.model.sequential_recommender  # noqa: F401  (runs sine.py's module code)
    import torch

    torch.autograd.set_detect_anomaly(False)


def silence_recbole_future_warnings():
    """Hide FutureWarnings whose warning site is inside RecBole (not ours, not actionable)."""
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"recbole(\.|$)")


def apply():
    """Apply every fix; safe to call more than once."""
    patch_numpy_aliases()
    patch_torchvision_meta_registrations()
    silence_recbole_future_warnings()


apply()
