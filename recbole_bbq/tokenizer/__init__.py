"""The BBQ tokenizer: behaviour vectors (stage 2) and behaviour-bound semantic IDs (stage 3)."""

from recbole_bbq.tokenizer.quantizer import ResidualQuantizer
from recbole_bbq.tokenizer.saved import load_tokenizer
from recbole_bbq.tokenizer.tokenizer import BBQTokenizer, code_statistics, deduplicate

__all__ = ["BBQTokenizer", "ResidualQuantizer", "code_statistics", "deduplicate", "load_tokenizer"]
