"""Per-kind behaviour of the REST store: one strategy per kind, one module per kind with
behaviour of its own (Kubernetes' ``pkg/registry/<group>/<kind>/strategy.go``).

The base classes are in :mod:`apiserver.strategies.base`; the registry
(:mod:`apiserver.registry`) gives every resource its strategy.
"""

from apiserver.strategies.base import DeleteOptions, StatusStrategy, Strategy

__all__ = ["DeleteOptions", "StatusStrategy", "Strategy"]
