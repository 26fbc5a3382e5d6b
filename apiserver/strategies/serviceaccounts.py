"""ServiceAccounts: an identity for pods, with ``/token`` handing out bound tokens.

Kubernetes' ``pkg/registry/core/serviceaccount/strategy.go``: the name is a DNS subdomain,
and references in ``secrets`` keep only their name (kube's ``cleanSecretReferences``).
The ``token`` subresource (TokenRequest) is served by :mod:`apiserver.handlers.tokens`.
"""

from __future__ import annotations

from apiserver.admission.validation import metadata_causes
from apiserver.strategies.base import Cause, Obj, Strategy


def _clean_secret_references(obj: Obj) -> None:
    secrets = obj.get("secrets")
    if isinstance(secrets, list):
        obj["secrets"] = [{"name": ref.get("name", "")} if isinstance(ref, dict) else ref
                          for ref in secrets]


class ServiceAccountStrategy(Strategy):
    def prepare_for_create(self, obj: Obj) -> None:
        _clean_secret_references(obj)

    def prepare_for_update(self, new: Obj, old: Obj) -> None:
        _clean_secret_references(new)

    def validate(self, new: Obj, old: Obj | None) -> list[Cause]:
        return metadata_causes(new)


STRATEGY = ServiceAccountStrategy()
