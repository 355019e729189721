"""Explore: the user's own SQL over a tidy Parquet snapshot, in a DuckDB sandbox.

- :mod:`core.explore.snapshot` asks the worker for the snapshot (one tidy Parquet export per
  station, reused while its inputs are unchanged);
- :mod:`core.explore.sandbox` runs a query over it in a short-lived, limited process
  (:mod:`core.explore.runner`), never in the web app's;
- :mod:`core.explore.examples` holds the ready-made queries, :mod:`core.explore.saved` the
  users' saved ones, and :mod:`core.explore.chart` draws a result.
"""
