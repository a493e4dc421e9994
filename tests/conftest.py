"""Shared pytest wiring: test-bed fixtures and the fixture plugins of each test-bed component."""

pytest_plugins = ["tests.testenv.fixtures", "tests.csdouble.fixtures"]
