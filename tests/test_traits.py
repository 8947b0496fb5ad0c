"""Model traits: what a model needs before training, declared once on its class."""

import pytest
from recbole.model.sequential_recommender.sasrec import SASRec

from recbole_bbq import pipeline, utils
from recbole_bbq.errors import ConfigError
from recbole_bbq.model.traits import ModelTraits, model_traits


@pytest.mark.parametrize(
    "model, semantic_ids, generative, stages",
    [
        ("BBQRec", "bbq", True, ("features", "behaviour", "tokenize")),
        ("BBQSASRec", "bbq", False, ("features", "behaviour", "tokenize")),
        ("TIGER", "tiger", True, ("features", "tokenize")),
        ("MMTIGER", "mmtiger", True, ("features", "tokenize")),
        ("UniSRec", None, False, ("features",)),
        ("SASRec", None, False, ()),  # RecBole's models get the defaults
        ("GRU4Rec", None, False, ()),
    ],
)
def test_traits_of_the_shipped_models(model, semantic_ids, generative, stages):
    traits = model_traits(model)
    assert (traits.semantic_ids, traits.generative, traits.stages) == (semantic_ids, generative, stages)
    assert traits.multimodal == bool(stages)


class FeatureSASRec(SASRec):
    """A new plugin model that only declares its traits."""

    item_features = True


def test_a_new_model_needs_no_edits_elsewhere(monkeypatch):
    real_get_model = utils.get_model
    monkeypatch.setattr(
        utils, "get_model", lambda name: FeatureSASRec if name == "FeatureSASRec" else real_get_model(name)
    )
    assert model_traits("FeatureSASRec") == ModelTraits(item_features=True)
    assert pipeline.model_stages("FeatureSASRec") == ("features",)
    pipeline.check_stage_for_model("features", "FeatureSASRec")
    with pytest.raises(ConfigError, match="FeatureSASRec has no 'tokenize' stage; its stages are: features"):
        pipeline.check_stage_for_model("tokenize", "FeatureSASRec")


def test_stage_without_the_trait_is_refused_naming_the_models_that_have_stages():
    with pytest.raises(ConfigError, match=r"models with stages: BBQRec, BBQSASRec, MMTIGER, TIGER, UniSRec"):
        pipeline.check_stage_for_model("features", "SASRec")
