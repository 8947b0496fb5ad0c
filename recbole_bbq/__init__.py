"""recbole-bbq: BBQRec (behaviour-bind quantization) as a RecBole plugin."""

from recbole_bbq import compat  # noqa: F401  (must run before recbole is imported)

__version__ = "0.1.0"
