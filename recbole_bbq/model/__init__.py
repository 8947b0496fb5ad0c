"""recbole_bbq models, one per file under ``<type>_recommender/`` as in RecBole."""
