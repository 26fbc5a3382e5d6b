"""Pods: created Pending with their QoS class; deleted gracefully once bound to a node.

A pod bound to a node is running (or about to) there: deleting it only marks it, with a
grace period, and the node agent removes it once its containers have stopped. A pod
that never reached a node, or has finished, has nothing to stop and goes at once.
"""

from __future__ import annotations

from apiclient.pods import is_terminal, qos_class
from apiserver.admission import defaulting, validation
from apiserver.strategies.base import DeleteOptions, Obj, StatusStrategy

DEFAULT_GRACE_PERIOD_SECONDS = 30  # Kubernetes' terminationGracePeriodSeconds default


class PodStrategy(StatusStrategy):
    def __init__(self) -> None:
        super().__init__(default=defaulting.pod, validate=validation.pod)

    def initial_status(self, obj: Obj) -> Obj:
        return {"phase": "Pending", "qosClass": qos_class(obj.get("spec") or {})}

    def grace_period(self, obj: Obj, options: DeleteOptions) -> int:
        spec = obj.get("spec") or {}
        if not spec.get("nodeName") or is_terminal(obj):
            return 0
        if options.grace_period_seconds is not None:
            return max(0, options.grace_period_seconds)
        return int(spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE_PERIOD_SECONDS))


STRATEGY = PodStrategy()
