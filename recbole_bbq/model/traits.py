"""What a model needs before it trains, declared once on its class.

A plugin model sets these class attributes; the stage runner, the dataset lookup, the config
checks and the comparison read them through :func:`model_traits`, so a new model needs no edits
elsewhere. RecBole's own models have none of them and get the defaults (interactions only).

- ``semantic_ids``: the tokenizer that makes its item IDs, ``"bbq"`` (BBQ tokenizer over the
  modalities and behaviour vectors), ``"tiger"`` (one RQ-VAE), ``"mmtiger"`` (an RQ-VAE per
  modality), or None.
- ``item_features``: it reads the item feature files (text/image vectors).
- ``generative``: it ranks by beam search over semantic IDs (``beam_size`` applies).
"""

from dataclasses import dataclass

SEMANTIC_ID_KINDS = ("bbq", "tiger", "mmtiger")


@dataclass(frozen=True)
class ModelTraits:
    """The traits of one model class (see the module docstring)."""

    semantic_ids: str | None = None
    item_features: bool = False
    generative: bool = False

    @property
    def stages(self):
        """The stages before training, in order: ``features``, ``behaviour``, ``tokenize``."""
        stages = ("features",) if self.item_features or self.semantic_ids else ()
        if self.semantic_ids == "bbq":
            stages += ("behaviour",)
        return stages + (("tokenize",) if self.semantic_ids else ())

    @property
    def multimodal(self):
        """True when its dataset needs the multi-modal hook (features or semantic IDs)."""
        return bool(self.stages)


def model_traits(model):
    """The :class:`ModelTraits` of a model class or model name (plugin first, then RecBole).

    Raises:
        UnknownModelError: ``model`` is a name no package has.
    """
    if isinstance(model, str):
        from recbole_bbq.utils import get_model

        model = get_model(model)
    defaults = ModelTraits()
    return ModelTraits(
        **{
            name: getattr(model, name, getattr(defaults, name))
            for name in ("semantic_ids", "item_features", "generative")
        }
    )
