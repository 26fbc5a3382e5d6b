"""Services: ClusterIP and NodePort allocation, kept across updates, released on delete.

Which addresses and ports a Service needs is decided in
:mod:`apiserver.admission.services`; this strategy ties it to the store's writes: a
write reserves before storing and gives back what a failed write took
(:meth:`begin_write`), an update that drops a port frees it once stored, and a deleted
Service frees everything it held.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from apiserver.admission import defaulting, validation
from apiserver.admission import services as allocation
from apiserver.strategies.base import Finish, Obj, StatusStrategy

if TYPE_CHECKING:
    from apiserver.rest import RestStore


class ServiceStrategy(StatusStrategy):
    def __init__(self) -> None:
        super().__init__(status={"loadBalancer": {}}, default=defaulting.service,
                         validate=validation.service)

    def prepare_for_update(self, new: Obj, old: Obj) -> None:
        super().prepare_for_update(new, old)
        allocation.keep_allocations(new, old)

    async def begin_write(self, new: Obj, old: Obj | None, store: RestStore) -> Finish:
        taken = await allocation.allocate(new, old, ips=store.service_ips,
                                          ports=store.node_ports)

        async def finish(success: bool) -> None:
            if not success:
                freed = taken
            elif old is not None:
                freed = allocation.released_by_update(new, old)
            else:
                return
            await allocation.release(freed, ips=store.service_ips, ports=store.node_ports)

        return finish

    async def after_remove(self, obj: Obj, store: RestStore) -> None:
        await allocation.release(allocation.allocations_of(obj), ips=store.service_ips,
                                 ports=store.node_ports)


STRATEGY = ServiceStrategy()
