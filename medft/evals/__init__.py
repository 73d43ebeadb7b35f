"""Benchmarks scored by ``python -m medft.evaluate`` and at the end of training.

One module per benchmark kind (``kormedmcqa``, ``pubmedqa``, ``heldout``), each offering a
:class:`~medft.evals.benchmark.Benchmark`: ``load_items`` (data only, so an offline mistake
fails before any weights load), ``score`` (the model's answers and the metrics) and ``check``
(its own config rules). ``registry`` maps each ``EvalKind`` to its benchmark. ``scoring``
holds the pure metric functions, ``generation`` the batched prompting they share, ``runner``
the glue: result files, the printed table and W&B.
"""
