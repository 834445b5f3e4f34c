"""The caller's thread: everything an error costs the code that raised it, and nothing more.

In call order, for one error (``ErrorMonitor.record_error``, a hook, a logged error):

1. :mod:`.front` (``CaptureFront``) recognises the exception once, then asks
2. :mod:`.signature` which group it belongs to (one cached lookup per raise site),
3. :mod:`.tally` and the capture-path metrics count it (lock-free),
4. :mod:`.budget` says whether this occurrence is kept in detail or only counted (storms),
5. :mod:`.context_copy`, :mod:`.trace_context` and :mod:`.work_unit` take what the
   occurrence was at that moment (its context, its trace, its request or job), and
6. :mod:`.occurrence` is the plain record handed to the queue: no frame, no traceback, no
   local crosses to the worker thread (:mod:`exporter.pipeline.ingest`).

:mod:`.headroom` lends stack to a capture near the recursion limit; :mod:`.block` is
``monitor.capture(...)`` (``with``/``async with``); :mod:`.ids` makes request and session ids.
Nothing here blocks, raises into the app, or keeps the app's memory alive.
"""
