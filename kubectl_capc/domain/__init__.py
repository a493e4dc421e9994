"""The plugin's pure core: model, inventory, versions, naming, plans, previews, records and checks.

Imports nothing from the other layers and no client library, so every part is testable in-process.
"""
