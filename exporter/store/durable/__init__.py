"""The durable stores: one process's SQLite file (``store_path``) and the fleet's PostgreSQL
(``store_url``), on one schema.

The in-memory :class:`~exporter.store.memory.ErrorStore` stays the read model (every API route, the
export and the collectors read it unchanged); this package keeps a SQLite file (WAL,
``synchronous=NORMAL``) in step with it, written behind on the report worker, and loads it
back when a process starts with the same ``store_path``. ``exporter.cli.offline_store``
reads the same file without a monitor (``export --store``, ``analyze --store``).

- :mod:`.tables`: the tables, versions and migration steps of every backend (dialects once).
- :mod:`.sqlite_schema`: the SQLite file's version, migrations, integrity check.
- :mod:`.rows`: a group as a row and back.
- :mod:`.tracking`: the store that notes what changed since the last write.
- :mod:`.sqlite_file`: batched writes, retention, loading.
- :mod:`.file_store`: what the monitor calls (open or move aside, load, tick, close).
- :mod:`.batch`: the batch of a store many processes write, its steps written once.
- :mod:`.postgres_database`: every statement of the shared store (batch, migrate, prune, load).
- :mod:`.sqlite_shared`: the same batch on one SQLite file many processes write (the
  multiprocess directory's ``error-exporter.sqlite``).
- :mod:`.postgres_store`: a store many processes write, as the monitor uses it (reconnects,
  buffers, counts new and regressed groups once): PostgreSQL, or the multiprocess file.
"""

from __future__ import annotations

from exporter.store.durable.file_store import (
    DROP_REASONS,
    DurableBackend,
    attach,
    check_config,
    move_aside,
)
from exporter.store.durable.sqlite_schema import (
    StoreCorrupt,
    StoreError,
    StoreTooNew,
)
from exporter.store.durable.tables import SCHEMA_VERSION

__all__ = [
    "DROP_REASONS",
    "SCHEMA_VERSION",
    "DurableBackend",
    "StoreCorrupt",
    "StoreError",
    "StoreTooNew",
    "attach",
    "check_config",
    "move_aside",
]
