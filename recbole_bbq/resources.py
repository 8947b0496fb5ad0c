"""Locate the YAML defaults shipped with the plugin."""

import os

_PACKAGE_DIR = os.path.dirname(os.path.realpath(__file__))


def properties_dir():
    """Return the directory holding ``overall.yaml``, ``model/`` and ``dataset/``.

    In a source checkout the YAML files live in the top-level ``properties/`` folder;
    in a wheel, setup.py installs that folder as ``recbole_bbq/properties``.
    """
    for candidate in (
        os.path.join(_PACKAGE_DIR, "properties"),
        os.path.join(os.path.dirname(_PACKAGE_DIR), "properties"),
    ):
        if os.path.isfile(os.path.join(candidate, "overall.yaml")):
            return candidate
    raise FileNotFoundError(
        f"recbole_bbq cannot find its properties/overall.yaml near {_PACKAGE_DIR}; reinstall the package."
    )


def property_file(*parts):
    """Path of one file below :func:`properties_dir` (it may not exist)."""
    return os.path.join(properties_dir(), *parts)
