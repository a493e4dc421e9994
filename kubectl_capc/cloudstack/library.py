"""The one place that imports `cs`, on first use: with aiohttp installed, importing it costs about half a
second, which commands that never call CloudStack should not pay."""

from __future__ import annotations

import functools
import sys
from types import ModuleType

__all__ = ["cs"]


@functools.cache
def cs() -> ModuleType:
    """The `cs` package, imported without the asyncio client and the JSON colouring it also loads when
    aiohttp and pygments are installed: the plugin uses neither, and aiohttp alone costs about 0.2 s of
    CPU. Both stay importable for anything else.

    Safe from several threads at once (validate's parallel connections): `import` waits for a module
    another thread is still initialising, where reading sys.modules would take it half made."""
    blocked = [name for name in ("aiohttp", "pygments") if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # an import of it fails: cs goes without
    try:
        import cs as library
    finally:
        for name in blocked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
    return library
