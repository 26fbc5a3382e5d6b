"""Nodes: a node agent registers its Node with a status, and the create keeps it.

Unlike other kinds with a ``/status`` subresource, a new Node's status is not reset: the
agent's first report (addresses, capacity, conditions) arrives with the create.
"""

from __future__ import annotations

from apiserver.admission import validation
from apiserver.strategies.base import Obj, StatusStrategy


class NodeStrategy(StatusStrategy):
    def __init__(self) -> None:
        super().__init__(validate=validation.node)

    def prepare_for_create(self, obj: Obj) -> None:
        self.default(obj)  # the status the agent registered with stays


STRATEGY = NodeStrategy()
