"""Shared pytest wiring: test-bed fixtures and the fixture plugins of each test-bed component."""

import os

# The plugin renders plain help (kubectl_capc sets this before typer is imported); a test module that
# imports typer before kubectl_capc would otherwise get rich help, whatever order the tests run in.
os.environ.setdefault("TYPER_USE_RICH", "0")

pytest_plugins = ["tests.testenv.fixtures", "tests.csdouble.fixtures"]
