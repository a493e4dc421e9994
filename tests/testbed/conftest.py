"""The workload-cluster fixtures (`wbed`, `wnamespace`) for the test-bed tests that use them."""

from tests.support.workload_support import wbed, wnamespace

__all__ = ["wbed", "wnamespace"]
