"""Benchmarks scored by ``python -m medft.evaluate`` and at the end of training.

One module per benchmark kind (``kormedmcqa``, ``pubmedqa``, ``heldout``), each with
``load_items`` (data only, so an offline mistake fails before any weights load) and
``score`` (the model's answers and the metrics). ``scoring`` holds the pure metric
functions, ``generation`` the batched prompting they share, ``runner`` the glue: result
files, the printed table and W&B.
"""
