"""The Prometheus side: which metric families exist and how each gets its value.

:mod:`.capture_path` (``ErrorMetrics``) holds the families the caller's thread updates;
:mod:`.families` is the table of scrape-time families (name, help, labels, multiprocess mode)
that :mod:`.collectors`, the multiprocess publisher and ``watch`` all read;
:mod:`.resources` samples psutil in the background; :mod:`.statistics` computes the
``ErrorMonitoringService`` statistics from ``app_errors_total`` samples.
"""
