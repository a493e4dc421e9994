"""One workflow per verb (upgrade, validate, gitops, image, rollback, cleanup, history, describe).

Each takes option objects and a `KubeTarget`, never flags, and drives the adapters below it.
"""
