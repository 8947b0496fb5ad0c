"""Dataset converters and item encoders: the library behind the ``dataset_scripts/`` commands.

Converters turn a public dataset layout into a recbole_bbq dataset folder; each module has a
``convert(...)`` function and a ``main(argv=None) -> int`` command:

* :mod:`~recbole_bbq.converters.amazon`: Amazon Reviews 2014/2018/2023 review and metadata files;
* :mod:`~recbole_bbq.converters.lcrec`: LC-Rec / MQL4GRec JSON datasets and their index files;
* :mod:`~recbole_bbq.converters.movielens`: the raw MovieLens-100K folder (and posters);
* :mod:`~recbole_bbq.converters.unisrec`: UniSRec / MISSRec pre-split benchmark folders.

:mod:`~recbole_bbq.converters.encode_text` and :mod:`~recbole_bbq.converters.encode_images` are
the commands of the item encoders in :mod:`recbole_bbq.data.text_encoder` and
:mod:`recbole_bbq.data.image_encoder`. Shared pieces: :mod:`~recbole_bbq.converters.common`
(cell text, atomic files, dataset YAML, statistics, all-or-nothing writing),
:mod:`~recbole_bbq.converters.inputs` (reading source files), :mod:`~recbole_bbq.converters.cli`
(flag spellings and the commands' exit status) and :mod:`~recbole_bbq.converters.feature_files`
(the encoders' cached feature-file output).

Options are spelled with underscores, as RecBole's and ``run_recbole_bbq.py``'s are
(``--output_dir``, ``--max_history``); the hyphen spelling (``--output-dir``) is an alias.
"""
