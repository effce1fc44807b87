"""Serving: every published task of a system from one process, over the Open Inference Protocol.

`mutask serve` (:mod:`.command`) loads the system's tasks into one :class:`~.catalog.Catalog`
(each frozen component loaded once, shared by every path that uses it), answers the protocol's
HTTP routes (:mod:`.app`, tensors in :mod:`.protocol` and :mod:`.signature`), batches
concurrent requests into windows whose common prefixes are computed once
(:mod:`.batcher`, :mod:`.shared_prefix`), reloads when a task is published (:mod:`.server`)
and exports Prometheus metrics (:mod:`.metrics`). This package's ``__init__`` and
:mod:`.flags` import nothing heavy, so `mutask --help` stays instant.
"""
