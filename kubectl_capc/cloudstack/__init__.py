"""The CloudStack adapter: API client, credentials, templates, uploads and async jobs.

The only package that imports `cs`.
"""
