"""kubectl-capc: a kubectl plugin that upgrades Cluster API Provider CloudStack workload clusters safely."""

import os

# Typer decides at import time whether to render help through rich, which alone costs about 150 ms of
# startup. Plain help keeps `kubectl capc --help` fast; a user can still opt in with TYPER_USE_RICH=1.
os.environ.setdefault("TYPER_USE_RICH", "0")
