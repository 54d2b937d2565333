"""stnbook: what only the STN Book needs, built on :mod:`stnlib`.

* :mod:`stnbook.experiments`: cells, profiles, the registry, running, verifying and loading artifacts;
  ``python -m stnbook {list,run,status}`` is its command.
* One folder per paper experiment, with the same files in each: ``experiment.py`` (data hooks, models built
  from stnlib, the cells and profiles, the analysis saved with each artifact) and ``report.py`` (the numbers,
  tables and figures of its chapter): :mod:`stnbook.table1`, :mod:`stnbook.rectify`, :mod:`stnbook.addition`,
  :mod:`stnbook.colocalisation`, :mod:`stnbook.birds` (also ``model.py`` and ``data.py``: the synthetic
  fine-grained proxy and its classifier), :mod:`stnbook.cost` (``bench.py``: the benchmarks).
* :mod:`stnbook.artifacts` (what chapters load), :mod:`stnbook.figures`, :mod:`stnbook.widgets`,
  :mod:`stnbook.web` (the in-page explorers, vendored web assets and the book's Sphinx extension),
  :mod:`stnbook.paths` (where the checkout's ``data/`` and ``results/`` are).

The library never imports this package.
"""
