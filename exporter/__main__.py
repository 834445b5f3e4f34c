"""``python -m exporter``: the same command line as ``error-exporter``."""

import sys

from exporter.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
