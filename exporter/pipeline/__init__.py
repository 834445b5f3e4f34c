"""The worker thread: where the slow part of an error goes, off the caller's thread.

:mod:`.background_queue` is the bounded queue and its daemon thread; :mod:`.ingest`
(``Pipeline``) turns each queued occurrence into its record and report and joins its group
(patterns, callbacks, auto-export); :mod:`.report_builder` formats the report (trace from
code objects and line numbers); :mod:`.deferred` defers the costly formatting until a reader
asks; :mod:`.terminal` prints one line per new group.
"""
