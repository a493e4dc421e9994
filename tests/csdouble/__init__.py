"""A CloudStack API double for tests: signed API, async jobs, template downloads and uploads, faults."""

from .seed import SeedError, load_seed
from .server import CloudStackDouble

__all__ = ["CloudStackDouble", "SeedError", "load_seed"]
