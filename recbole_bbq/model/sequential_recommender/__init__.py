"""Sequential recommenders of recbole_bbq (looked up before RecBole's by ``get_model``)."""
