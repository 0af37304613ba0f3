"""Entry of a search worker process: ``python -m srnas.search SETTINGS_JSON WORKER_ID``."""

import sys

from srnas.search.optuna_engine import worker_main

sys.exit(worker_main(sys.argv[1:]))
