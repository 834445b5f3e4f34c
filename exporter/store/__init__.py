"""Where groups and occurrences are kept, and the one way every reader reads them.

:mod:`.memory` (``ErrorStore``) is the in-memory store, the read model of every backend;
:mod:`.read_protocol` (``ErrorReader``) is what the HTTP API, the CLI and the export read;
:mod:`.local_view` serves it from this process; :mod:`.settled` makes reads see one moment;
:mod:`.codec` reads the JSON shapes back; :mod:`.json_export` writes the JSON export file;
:mod:`.dsn` tells which backend a ``store_url`` names. :mod:`.durable` holds the durable
backends (one process's SQLite file, the fleet's PostgreSQL) on one schema.
"""
