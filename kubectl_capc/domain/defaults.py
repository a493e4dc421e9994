"""Defaults that command-line help shows, in a module that imports nothing: `--help` reads them without
loading the modules that use them."""

from __future__ import annotations

__all__ = ["DEFAULT_PREBUILT_BASE_URL"]

# Where the CAPC documentation publishes prebuilt node images (README "Prebuilt images").
DEFAULT_PREBUILT_BASE_URL = "http://packages.shapeblue.com/cluster-api-provider-cloudstack/images"
