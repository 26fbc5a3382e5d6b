"""The ServiceAccounts controller: a ``default`` ServiceAccount in every namespace.

kube's ``pkg/controller/serviceaccount/serviceaccounts_controller.go``: every active
namespace gets the ServiceAccounts in :data:`MANAGED_SERVICE_ACCOUNTS` (``default``),
and one that is deleted is created again. Pods need it: the ServiceAccount admission
plugin refuses a pod whose ServiceAccount does not exist.

Invariants:
- The key is the namespace name; a namespace event or the deletion of a managed
  ServiceAccount enqueues it, and :func:`missing_service_accounts` decides from the
  informers' stores alone.
- A terminating namespace gets nothing (the create would be refused anyway), and an
  ``AlreadyExists`` answer (someone was faster) is success.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from apiclient.client import ApiClient
from apiclient.controller import Controller, SharedInformers
from apiclient.errors import AlreadyExistsError, ForbiddenError, NotFoundError
from apiclient.resources import NAMESPACES, SERVICEACCOUNTS

__all__ = ["MANAGED_SERVICE_ACCOUNTS", "ServiceAccountsController", "missing_service_accounts"]

log = logging.getLogger(__name__)

MANAGED_SERVICE_ACCOUNTS = ("default",)


def is_active(namespace: Mapping[str, Any]) -> bool:
    """Not terminating: new content may be created in it."""
    meta = namespace.get("metadata") or {}
    phase = (namespace.get("status") or {}).get("phase", "Active")
    return not meta.get("deletionTimestamp") and phase == "Active"


def missing_service_accounts(namespace: Mapping[str, Any] | None,
                             existing: Iterable[str]) -> list[str]:
    """The managed ServiceAccounts to create in ``namespace`` (``existing``: the names of
    those it has); none when the namespace is gone or terminating."""
    if namespace is None or not is_active(namespace):
        return []
    have = set(existing)
    return [name for name in MANAGED_SERVICE_ACCOUNTS if name not in have]


class ServiceAccountsController(Controller):
    name = "serviceaccount"
    workers = 2

    def __init__(self, client: ApiClient, informers: SharedInformers) -> None:
        super().__init__(client, informers)
        self.namespaces = informers.informer(NAMESPACES)
        self.namespaces.add_handler(on_add=self._namespace_event,
                                    on_update=lambda _old, new: self._namespace_event(new))
        selector = ",".join(f"metadata.name={name}" for name in MANAGED_SERVICE_ACCOUNTS)
        self.accounts = informers.informer(SERVICEACCOUNTS, field_selector=selector)
        self.accounts.add_handler(on_delete=self._account_deleted)

    def _namespace_event(self, namespace: dict) -> None:
        self.enqueue(namespace["metadata"]["name"])

    def _account_deleted(self, account: dict) -> None:
        meta = account.get("metadata") or {}
        if meta.get("name") in MANAGED_SERVICE_ACCOUNTS and meta.get("namespace"):
            self.enqueue(meta["namespace"])

    async def reconcile(self, key: str) -> None:
        existing = [name for name in MANAGED_SERVICE_ACCOUNTS
                    if self.accounts.store.get(f"{key}/{name}") is not None]
        for name in missing_service_accounts(self.namespaces.store.get(key), existing):
            try:
                await self.client.create(SERVICEACCOUNTS, {
                    "apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": name, "namespace": key}}, namespace=key)
            except AlreadyExistsError:
                continue
            except (ForbiddenError, NotFoundError):
                return  # the namespace is terminating or gone: nothing to do
            log.info("created ServiceAccount %s/%s", key, name)
