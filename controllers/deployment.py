"""The Deployment controller: roll a pod template out through ReplicaSets.

Kubernetes' ``pkg/controller/deployment`` (sync.go, rolling.go, recreate.go) in small.
Each reconcile claims the Deployment's ReplicaSets, finds the *new* one (the ReplicaSet
whose template equals the Deployment's, ignoring the ``pod-template-hash`` label), then
takes one step of the strategy and writes ``/status``; the next event takes the next step.

Invariants:
- A new ReplicaSet is named ``<deployment>-<pod-template-hash>`` and labelled (template
  and selector) with ``pod-template-hash``. The hash is *not* Kubernetes' fnv32a over Go's
  spew dump (that dump cannot be reproduced outside Go): it is fnv32a over the template's
  canonical JSON (sorted keys, plus the collisionCount when set), rendered with the same
  safe alphabet Kubernetes uses, so names look alike and are stable across restarts.
- RollingUpdate never has more than ``replicas + maxSurge`` pods (surge rounds up) and
  never fewer than ``replicas - maxUnavailable`` available (unavailable rounds down; both
  zero means one may be unavailable), exactly as ``NewRSNewReplicas`` and
  ``reconcileOldReplicaSets`` compute it.
- Recreate scales every old ReplicaSet to zero and waits until their pods are gone before
  the new ReplicaSet gets any replicas.
- Revisions: the new ReplicaSet's ``deployment.kubernetes.io/revision`` is one more than the
  highest old one (so ``kubectl rollout undo`` re-uses an old ReplicaSet under a new
  revision) and the Deployment carries the same number. ``desired-replicas`` and
  ``max-replicas`` annotations are kept on every active ReplicaSet.
- Conditions as in Kubernetes: Available (MinimumReplicasAvailable / Unavailable) and
  Progressing (ReplicaSetUpdated while progress is made, NewReplicaSetAvailable when
  complete, ProgressDeadlineExceeded after ``progressDeadlineSeconds`` without progress,
  which ``kubectl rollout status`` reports as a failed rollout).
- Only old ReplicaSets scaled to zero and without pods are deleted, oldest revision first,
  down to ``revisionHistoryLimit``.
- RS writes carry the cached resourceVersion: a decision made on a stale cache fails with a
  conflict and is retried on fresh state instead of being applied.
- A change of ``replicas`` (seen as a ReplicaSet whose desired-replicas annotation differs)
  only resizes, proportionally across the active ReplicaSets mid-rollout, before any
  rollout step is taken; a paused Deployment only resizes.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Mapping
from datetime import UTC, datetime

import orjson

from apiclient.client import ApiClient
from apiclient.controller import Controller, SharedInformers
from apiclient.errors import AlreadyExistsError, NotFoundError
from apiclient.labels import (
    DESIRED_REPLICAS_ANNOTATION,
    LAST_APPLIED_ANNOTATION,
    MAX_REPLICAS_ANNOTATION,
    POD_TEMPLATE_HASH_LABEL,
    REVISION_ANNOTATION,
    REVISION_HISTORY_ANNOTATION,
)
from apiclient.meta import object_key, owner_reference, parse_time, split_key, utc_now
from apiclient.pods import is_terminal
from apiclient.resources import DEPLOYMENTS, PODS, REPLICASETS
from apiclient.selectors import SelectorError, label_selector_from_spec
from apiclient.store import NAMESPACE_INDEX, namespace_index
from controllers.ownership import claim, controller_of, labels_of, uid_of

__all__ = [
    "DeploymentController",
    "new_replicas_for_rollout",
    "resolve_fenceposts",
    "scale_targets",
    "template_hash",
    "templates_equal",
]

log = logging.getLogger(__name__)

# Deployment annotations never copied to its ReplicaSets (deployment/util annotationsToSkip).
_NOT_COPIED = frozenset({LAST_APPLIED_ANNOTATION, REVISION_ANNOTATION, REVISION_HISTORY_ANNOTATION,
                         DESIRED_REPLICAS_ANNOTATION, MAX_REPLICAS_ANNOTATION,
                         "deprecated.deployment.rollback.to"})
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # apimachinery rand.SafeEncodeString


# --- pure rules (unit tested) -----------------------------------------------------------


def template_hash(template: Mapping, *, collision_count: int | None = None) -> str:
    """The pod-template-hash label value: fnv32a of the canonical JSON, safe-encoded."""
    data = orjson.dumps(template, option=orjson.OPT_SORT_KEYS)
    if collision_count is not None:
        data += str(collision_count).encode()
    value = 0x811C9DC5
    for byte in data:
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return "".join(_SAFE_ALPHABET[ord(digit) % len(_SAFE_ALPHABET)] for digit in str(value))


def _without_hash(template: Mapping) -> dict:
    meta = dict(template.get("metadata") or {})
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k != POD_TEMPLATE_HASH_LABEL}
    meta["labels"] = labels
    if not labels:
        del meta["labels"]
    return {**template, "metadata": meta}


def templates_equal(a: Mapping, b: Mapping) -> bool:
    """Equal apart from the pod-template-hash label (EqualIgnoreHash)."""
    return _without_hash(a) == _without_hash(b)


def _scaled_value(value: int | str | None, total: int, *, round_up: bool) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.endswith("%"):
        exact = int(text[:-1]) * total / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    return int(text)


def resolve_fenceposts(max_surge: int | str | None, max_unavailable: int | str | None,
                       replicas: int) -> tuple[int, int]:
    """(surge, unavailable) in pods: surge rounds up, unavailable down; never both zero."""
    surge = _scaled_value(max_surge, replicas, round_up=True)
    unavailable = _scaled_value(max_unavailable, replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def new_replicas_for_rollout(replicas: int, surge: int, new_rs_replicas: int,
                             all_rs_replicas: int) -> int:
    """How far the new ReplicaSet may scale up now (NewRSNewReplicas for RollingUpdate)."""
    max_total = replicas + surge
    if all_rs_replicas >= max_total:
        return new_rs_replicas
    scale_up = min(max_total - all_rs_replicas, replicas - new_rs_replicas)
    return new_rs_replicas + max(0, scale_up)


def scale_targets(deployment: Mapping, new_rs: Mapping | None, olds: list[dict], *,
                  surge: int) -> dict[str, int]:
    """The size of every active ReplicaSet after ``replicas`` changed (sync.go ``scale``):
    a lone active (or else the newest) ReplicaSet takes it all; a saturated new one makes
    the old ones zero; otherwise a rolling Deployment's ReplicaSets share the change in
    proportion to their size (``GetProportion``), leftovers going to the largest. Keyed by
    uid; ``olds`` newest first."""
    spec = deployment.get("spec") or {}
    wanted = int(spec.get("replicas", 1))
    everything = [*([new_rs] if new_rs is not None else []), *olds]
    active = [rs for rs in everything if _replicas(rs) > 0]
    if len(active) <= 1:
        chosen = active[0] if active else (new_rs if new_rs is not None else
                                           (olds[0] if olds else None))
        return {uid_of(chosen): wanted} if chosen is not None else {}
    if new_rs is not None and _replicas(new_rs) == wanted and \
            _status_count(new_rs, "availableReplicas") == wanted:
        return {uid_of(rs): 0 for rs in olds if _replicas(rs) > 0}
    if (spec.get("strategy") or {}).get("type") == "Recreate":
        return {}
    allowed = wanted + surge if wanted > 0 else 0
    to_add = allowed - sum(_replicas(rs) for rs in active)
    if to_add == 0:
        return {uid_of(rs): _replicas(rs) for rs in active}
    # Largest first; ties: newer first when growing, older first when shrinking.
    order = {uid_of(rs): position for position, rs in enumerate(everything)}
    active.sort(key=lambda rs: (-_replicas(rs), order[uid_of(rs)] if to_add > 0
                                else -order[uid_of(rs)]))
    targets, added = {}, 0
    status_replicas = int((deployment.get("status") or {}).get("replicas") or 0)
    for rs in active:
        proportion = _proportion(rs, wanted, allowed, to_add, added, status_replicas)
        targets[uid_of(rs)] = _replicas(rs) + proportion
        added += proportion
    largest = uid_of(active[0])
    targets[largest] = max(0, targets[largest] + to_add - added)
    return targets


def _proportion(rs: Mapping, wanted: int, allowed: int, to_add: int, added: int,
                status_replicas: int) -> int:
    if _replicas(rs) == 0 or to_add == added:
        return 0
    if wanted == 0:
        fraction = -_replicas(rs)
    else:
        try:
            annotations = (rs.get("metadata") or {}).get("annotations") or {}
            annotated = int(annotations[MAX_REPLICAS_ANNOTATION])
        except (KeyError, ValueError):
            annotated = status_replicas
        # Go's integer.RoundToInt32: half away from zero.
        exact = _replicas(rs) * allowed / annotated if annotated else _replicas(rs)
        fraction = math.floor(exact + 0.5) - _replicas(rs)
    remaining = to_add - added
    return min(fraction, remaining) if to_add > 0 else max(fraction, remaining)


def revision_of(obj: Mapping) -> int:
    try:
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        return int(annotations.get(REVISION_ANNOTATION, 0))
    except ValueError:
        return 0


def _replicas(rs: Mapping) -> int:
    return int((rs.get("spec") or {}).get("replicas") or 0)


def _status_count(rs: Mapping | None, field: str) -> int:
    return int(((rs or {}).get("status") or {}).get(field) or 0)


def _created(obj: Mapping) -> str:
    return (obj.get("metadata") or {}).get("creationTimestamp") or ""


def _condition(conditions: list[dict], kind: str) -> dict | None:
    return next((c for c in conditions if c.get("type") == kind), None)


def _set_condition(conditions: list[dict], kind: str, status: str, reason: str,
                   message: str, *, touch: bool = False) -> list[dict]:
    """SetDeploymentCondition: lastTransitionTime moves only when the status flips;
    ``touch`` moves lastUpdateTime even when nothing else changes (progress was made)."""
    now = utc_now()
    old = _condition(conditions, kind)
    if old is not None and old.get("status") == status and old.get("reason") == reason:
        updated = {**old, "message": message}
        if touch or old.get("message") != message:
            updated["lastUpdateTime"] = now
    else:
        transition = old["lastTransitionTime"] if old is not None and \
            old.get("status") == status else now
        updated = {"type": kind, "status": status, "lastUpdateTime": now,
                   "lastTransitionTime": transition, "reason": reason, "message": message}
    return [*(c for c in conditions if c.get("type") != kind), updated]


# --- the controller ---------------------------------------------------------------------


class DeploymentController(Controller):
    name = "deployment"
    workers = 4

    def __init__(self, client: ApiClient, informers: SharedInformers) -> None:
        super().__init__(client, informers)
        self.deployments = informers.informer(DEPLOYMENTS,
                                              indexers={NAMESPACE_INDEX: namespace_index})
        self.replicasets = informers.informer(REPLICASETS,
                                              indexers={NAMESPACE_INDEX: namespace_index})
        self.pods = informers.informer(PODS, indexers={NAMESPACE_INDEX: namespace_index})
        self.deployments.add_handler(
            on_add=self._enqueue_object, on_update=lambda _old, new: self._enqueue_object(new))
        self.replicasets.add_handler(
            on_add=self._on_replicaset,
            on_update=lambda old, new: (self._on_replicaset(old), self._on_replicaset(new)),
            on_delete=self._on_replicaset)
        # Recreate waits for old pods to be gone: their deletion must wake the Deployment.
        self.pods.add_handler(on_delete=self._on_pod_deleted)

    def _enqueue_object(self, obj: dict) -> None:
        self.enqueue(object_key(obj))

    def _on_replicaset(self, rs: dict) -> None:
        namespace = rs["metadata"].get("namespace", "")
        ref = controller_of(rs)
        if ref is not None:
            if ref.get("kind") == "Deployment":
                self.enqueue(f"{namespace}/{ref['name']}")
            return
        for deployment in self.deployments.store.by_index(NAMESPACE_INDEX, namespace):
            try:
                selector = label_selector_from_spec((deployment.get("spec") or {}).get("selector"))
            except SelectorError:
                continue
            if selector.matches(labels_of(rs)):
                self.enqueue(object_key(deployment))

    def _on_pod_deleted(self, pod: dict) -> None:
        ref = controller_of(pod)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return
        rs = self.replicasets.store.get(f"{pod['metadata'].get('namespace')}/{ref['name']}")
        if rs is not None:
            self._on_replicaset(rs)

    # --- reconcile ----------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        deployment = self.deployments.store.get(key)
        if deployment is None or deployment["metadata"].get("deletionTimestamp"):
            return
        spec = deployment.get("spec") or {}
        selector = label_selector_from_spec(spec.get("selector"))
        if selector.empty:
            log.warning("deployment %s: an empty selector would select every pod; skipped", key)
            return
        namespace, _ = split_key(key)
        candidates = self.replicasets.store.by_index(NAMESPACE_INDEX, namespace or "")
        replicasets = await claim(self.client, REPLICASETS, deployment, selector, candidates)
        recreate = (spec.get("strategy") or {}).get("type") == "Recreate"
        if spec.get("paused") or (not recreate and
                                  self._is_scaling_event(deployment, replicasets)):
            await self._scale_only(deployment, replicasets)
            return
        if recreate:
            await self._recreate(deployment, replicasets)
        else:
            await self._rolling_update(deployment, replicasets)

    @staticmethod
    def _is_scaling_event(deployment: dict, replicasets: list[dict]) -> bool:
        """``replicas`` changed since the active ReplicaSets were last sized (their
        desired-replicas annotation says so)."""
        wanted = str((deployment.get("spec") or {}).get("replicas", 1))
        return any(((rs["metadata"].get("annotations") or {}).get(DESIRED_REPLICAS_ANNOTATION,
                                                                   wanted)) != wanted
                   for rs in replicasets if _replicas(rs) > 0)

    async def _scale_only(self, deployment: dict, replicasets: list[dict]) -> None:
        """A scaling event (or a paused Deployment): resize, take no rollout step (sync.go
        ``sync`` and ``scale``)."""
        new_rs = self._find_new(deployment, replicasets)
        olds = sorted((rs for rs in replicasets if new_rs is None or uid_of(rs) != uid_of(new_rs)),
                      key=_created, reverse=True)
        targets = scale_targets(deployment, new_rs, olds,
                                surge=self._surge_and_unavailable(deployment)[0])
        for rs in [*olds, *([new_rs] if new_rs is not None else [])]:
            if uid_of(rs) in targets:
                await self._scale(deployment, rs, targets[uid_of(rs)])
        await self._sync_status(deployment, replicasets, new_rs)

    def _find_new(self, deployment: dict, replicasets: list[dict]) -> dict | None:
        template = (deployment.get("spec") or {}).get("template") or {}
        matching = [rs for rs in replicasets
                    if templates_equal((rs.get("spec") or {}).get("template") or {}, template)]
        return min(matching, key=_created) if matching else None

    async def _rolling_update(self, deployment: dict, replicasets: list[dict]) -> None:
        deployment, new_rs = await self._get_or_create_new(deployment, replicasets)
        olds = [rs for rs in replicasets if uid_of(rs) != uid_of(new_rs)]
        all_rs = [*olds, new_rs]
        if await self._reconcile_new(deployment, new_rs, all_rs) or \
                await self._reconcile_olds(deployment, new_rs, olds):
            await self._sync_status(deployment, all_rs, new_rs)
            return
        await self._finish_step(deployment, new_rs, olds)

    async def _recreate(self, deployment: dict, replicasets: list[dict]) -> None:
        new_rs = self._find_new(deployment, replicasets)
        olds = [rs for rs in replicasets if new_rs is None or uid_of(rs) != uid_of(new_rs)]
        scaled_down = False
        for rs in olds:
            if _replicas(rs) > 0:
                await self._scale(deployment, rs, 0)
                scaled_down = True
        if scaled_down:
            await self._sync_status(deployment, replicasets, new_rs)
            return
        if self._old_pods_remain(olds):
            await self._sync_status(deployment, replicasets, new_rs)
            return
        deployment, new_rs = await self._get_or_create_new(deployment, replicasets)
        wanted = int((deployment.get("spec") or {}).get("replicas", 1))
        if _replicas(new_rs) != wanted:
            await self._scale(deployment, new_rs, wanted)
            await self._sync_status(deployment, [*olds, new_rs], new_rs)
            return
        await self._finish_step(deployment, new_rs, olds)

    def _old_pods_remain(self, olds: list[dict]) -> bool:
        uids = {uid_of(rs) for rs in olds}
        if not uids:
            return False
        namespace = olds[0]["metadata"]["namespace"]
        for pod in self.pods.store.by_index(NAMESPACE_INDEX, namespace):
            ref = controller_of(pod)
            if ref is not None and ref.get("uid") in uids and not is_terminal(pod):
                return True
        return False

    async def _finish_step(self, deployment: dict, new_rs: dict, olds: list[dict]) -> None:
        status = self._calculate_status(deployment, [*olds, new_rs], new_rs)
        if self._complete(deployment, status):
            await self._clean_up_history(deployment, olds)
        await self._write_status(deployment, status)

    # --- the new ReplicaSet ---------------------------------------------------------------

    def _surge_and_unavailable(self, deployment: dict) -> tuple[int, int]:
        spec = deployment.get("spec") or {}
        strategy = spec.get("strategy") or {}
        replicas = int(spec.get("replicas", 1))
        if strategy.get("type") == "Recreate":
            return 0, 0
        rolling = strategy.get("rollingUpdate") or {}
        surge, unavailable = resolve_fenceposts(rolling.get("maxSurge", "25%"),
                                                rolling.get("maxUnavailable", "25%"), replicas)
        return surge, min(unavailable, replicas)

    def _replica_annotations(self, deployment: dict) -> dict[str, str]:
        replicas = int((deployment.get("spec") or {}).get("replicas", 1))
        surge, _ = self._surge_and_unavailable(deployment)
        return {DESIRED_REPLICAS_ANNOTATION: str(replicas),
                MAX_REPLICAS_ANNOTATION: str(replicas + surge)}

    async def _get_or_create_new(self, deployment: dict, replicasets: list[dict]
                                 ) -> tuple[dict, dict]:
        """The new ReplicaSet, its revision and annotations brought up to date (created if
        missing); the Deployment's revision annotation follows it."""
        max_old_revision = max((revision_of(rs) for rs in replicasets
                                if not templates_equal(
                                    (rs.get("spec") or {}).get("template") or {},
                                    (deployment.get("spec") or {}).get("template") or {})),
                               default=0)
        revision = str(max_old_revision + 1)
        existing = self._find_new(deployment, replicasets)
        if existing is None:
            new_rs = await self._create_new(deployment, replicasets, revision)
        else:
            new_rs = await self._update_annotations(deployment, existing, revision)
        if (deployment["metadata"].get("annotations") or {}).get(REVISION_ANNOTATION) != \
                str(revision_of(new_rs)):
            meta = deployment["metadata"]
            deployment = await self.client.patch(
                DEPLOYMENTS, meta["name"],
                {"metadata": {"annotations": {REVISION_ANNOTATION: str(revision_of(new_rs))},
                              "resourceVersion": meta["resourceVersion"]}},
                namespace=meta["namespace"])
        return deployment, new_rs

    async def _update_annotations(self, deployment: dict, rs: dict, revision: str) -> dict:
        """Bring the new ReplicaSet's annotations (and minReadySeconds) up to date."""
        annotations = dict(rs["metadata"].get("annotations") or {})
        wanted = {**annotations, **self._copied_annotations(deployment),
                  **self._replica_annotations(deployment)}
        if revision_of(rs) < int(revision):
            wanted[REVISION_ANNOTATION] = revision
        min_ready = (deployment.get("spec") or {}).get("minReadySeconds", 0)
        if wanted == annotations and (rs.get("spec") or {}).get("minReadySeconds", 0) == min_ready:
            return rs
        meta = rs["metadata"]
        return await self.client.patch(
            REPLICASETS, meta["name"],
            {"metadata": {"annotations": wanted, "resourceVersion": meta["resourceVersion"]},
             "spec": {"minReadySeconds": min_ready}},
            namespace=meta["namespace"])

    @staticmethod
    def _copied_annotations(deployment: dict) -> dict[str, str]:
        annotations = deployment["metadata"].get("annotations") or {}
        return {k: v for k, v in annotations.items() if k not in _NOT_COPIED}

    async def _create_new(self, deployment: dict, replicasets: list[dict],
                          revision: str) -> dict:
        spec = deployment.get("spec") or {}
        meta = deployment["metadata"]
        template = spec.get("template") or {}
        collision_count = (deployment.get("status") or {}).get("collisionCount")
        hash_value = template_hash(template, collision_count=collision_count)
        template_meta = dict(template.get("metadata") or {})
        template_meta["labels"] = {**(template_meta.get("labels") or {}),
                                   POD_TEMPLATE_HASH_LABEL: hash_value}
        selector = dict(spec.get("selector") or {})
        selector["matchLabels"] = {**(selector.get("matchLabels") or {}),
                                   POD_TEMPLATE_HASH_LABEL: hash_value}
        wanted = int(spec.get("replicas", 1))
        if (spec.get("strategy") or {}).get("type") == "Recreate":
            replicas = wanted
        else:
            surge, _ = self._surge_and_unavailable(deployment)
            replicas = new_replicas_for_rollout(wanted, surge, 0,
                                                sum(_replicas(rs) for rs in replicasets))
        body = {
            "apiVersion": REPLICASETS.api_version, "kind": REPLICASETS.kind,
            "metadata": {
                "name": f"{meta['name']}-{hash_value}",
                "namespace": meta["namespace"],
                "labels": dict(template_meta["labels"]),
                "annotations": {**self._copied_annotations(deployment),
                                **self._replica_annotations(deployment),
                                REVISION_ANNOTATION: revision},
                "ownerReferences": [owner_reference(deployment)],
            },
            "spec": {"replicas": replicas, "minReadySeconds": spec.get("minReadySeconds", 0),
                     "selector": selector, "template": {**template, "metadata": template_meta}},
        }
        try:
            created = await self.client.create(REPLICASETS, body, namespace=meta["namespace"])
        except AlreadyExistsError:
            # Made by an earlier reconcile the cache has not shown yet, or a hash collision.
            current = await self.client.get(REPLICASETS, body["metadata"]["name"],
                                            namespace=meta["namespace"])
            ref = controller_of(current)
            if ref is not None and ref.get("uid") == uid_of(deployment) and templates_equal(
                    (current.get("spec") or {}).get("template") or {}, template):
                return current
            await self._bump_collision_count(deployment)
            raise
        log.info("deployment %s: created replica set %s (revision %s)", object_key(deployment),
                 created["metadata"]["name"], revision)
        return created

    async def _bump_collision_count(self, deployment: dict) -> None:
        meta = deployment["metadata"]
        count = int((deployment.get("status") or {}).get("collisionCount") or 0) + 1
        await self.client.patch(DEPLOYMENTS, meta["name"],
                                {"status": {"collisionCount": count},
                                 "metadata": {"resourceVersion": meta["resourceVersion"]}},
                                namespace=meta["namespace"], subresource="status")

    # --- scaling steps ---------------------------------------------------------------------

    async def _scale(self, deployment: dict, rs: dict, replicas: int) -> dict:
        meta = rs["metadata"]
        annotations = {**(meta.get("annotations") or {}), **self._replica_annotations(deployment)}
        if replicas == _replicas(rs) and annotations == (meta.get("annotations") or {}):
            return rs
        return await self.client.patch(
            REPLICASETS, meta["name"],
            {"metadata": {"annotations": annotations, "resourceVersion": meta["resourceVersion"]},
             "spec": {"replicas": replicas}},
            namespace=meta["namespace"])

    async def _reconcile_new(self, deployment: dict, new_rs: dict, all_rs: list[dict]) -> bool:
        wanted = int((deployment.get("spec") or {}).get("replicas", 1))
        current = _replicas(new_rs)
        if current == wanted:
            return False
        if current > wanted:
            await self._scale(deployment, new_rs, wanted)
            return True
        surge, _ = self._surge_and_unavailable(deployment)
        target = new_replicas_for_rollout(wanted, surge, current,
                                          sum(_replicas(rs) for rs in all_rs))
        if target == current:
            return False
        await self._scale(deployment, new_rs, target)
        return True

    async def _reconcile_olds(self, deployment: dict, new_rs: dict, olds: list[dict]) -> bool:
        """Scale old ReplicaSets down as far as availability allows (rolling.go)."""
        olds = sorted((rs for rs in olds if _replicas(rs) > 0), key=_created)
        if not olds:
            return False
        wanted = int((deployment.get("spec") or {}).get("replicas", 1))
        _, unavailable = self._surge_and_unavailable(deployment)
        min_available = wanted - unavailable
        all_pods = sum(_replicas(rs) for rs in olds) + _replicas(new_rs)
        new_unavailable = _replicas(new_rs) - _status_count(new_rs, "availableReplicas")
        max_scale_down = all_pods - min_available - new_unavailable
        if max_scale_down <= 0:
            return False
        targets = {uid_of(rs): _replicas(rs) for rs in olds}
        # First the old pods that are not available anyway: removing them costs nothing.
        cleaned = 0
        for rs in olds:
            if cleaned >= max_scale_down:
                break
            unhealthy = _replicas(rs) - _status_count(rs, "availableReplicas")
            if unhealthy <= 0:
                continue
            step = min(max_scale_down - cleaned, unhealthy)
            targets[uid_of(rs)] -= step
            cleaned += step
        # Then available ones, while the total available stays at least min_available.
        available = sum(_status_count(rs, "availableReplicas") for rs in [*olds, new_rs])
        budget = available - min_available
        for rs in olds:
            if budget <= 0:
                break
            current = targets[uid_of(rs)]
            step = min(current, budget)
            targets[uid_of(rs)] = current - step
            budget -= step
        changed = False
        for rs in olds:
            if targets[uid_of(rs)] != _replicas(rs):
                await self._scale(deployment, rs, targets[uid_of(rs)])
                changed = True
        return changed

    async def _clean_up_history(self, deployment: dict, olds: list[dict]) -> None:
        limit = (deployment.get("spec") or {}).get("revisionHistoryLimit")
        if limit is None:
            return
        removable = sorted((rs for rs in olds if _replicas(rs) == 0
                            and _status_count(rs, "replicas") == 0
                            and not rs["metadata"].get("deletionTimestamp")),
                           key=lambda rs: (revision_of(rs), _created(rs)))
        for rs in removable[:max(0, len(removable) - int(limit))]:
            meta = rs["metadata"]
            try:
                await self.client.delete(REPLICASETS, meta["name"], namespace=meta["namespace"],
                                         preconditions={"uid": meta["uid"]})
            except NotFoundError:
                continue

    # --- status ---------------------------------------------------------------------------

    def _calculate_status(self, deployment: dict, all_rs: list[dict],
                          new_rs: dict | None) -> dict:
        spec = deployment.get("spec") or {}
        wanted = int(spec.get("replicas", 1))
        _, unavailable = self._surge_and_unavailable(deployment)
        old_status = deployment.get("status") or {}
        available = sum(_status_count(rs, "availableReplicas") for rs in all_rs)
        status = {
            "observedGeneration": deployment["metadata"].get("generation", 0),
            "replicas": sum(_status_count(rs, "replicas") for rs in all_rs),
            "updatedReplicas": _status_count(new_rs, "replicas"),
            "readyReplicas": sum(_status_count(rs, "readyReplicas") for rs in all_rs),
            "availableReplicas": available,
            "unavailableReplicas": max(0, wanted - available),
        }
        if "collisionCount" in old_status:
            status["collisionCount"] = old_status["collisionCount"]
        conditions = list(old_status.get("conditions") or [])
        if available >= wanted - unavailable:
            conditions = _set_condition(conditions, "Available", "True",
                                        "MinimumReplicasAvailable",
                                        "Deployment has minimum availability.")
        else:
            conditions = _set_condition(conditions, "Available", "False",
                                        "MinimumReplicasUnavailable",
                                        "Deployment does not have minimum availability.")
        if new_rs is not None:
            name = new_rs["metadata"]["name"]
            if self._complete(deployment, status):
                conditions = _set_condition(conditions, "Progressing", "True",
                                            "NewReplicaSetAvailable",
                                            f'ReplicaSet "{name}" has successfully progressed.')
            elif self._progressing(old_status, status) or f'"{name}"' not in (_condition(
                    conditions, "Progressing") or {}).get("message", ""):
                # Progress, or a rollout to another ReplicaSet than the condition names
                # (NewReplicaSetCreated in Kubernetes): the deadline clock starts afresh.
                conditions = _set_condition(conditions, "Progressing", "True",
                                            "ReplicaSetUpdated",
                                            f'ReplicaSet "{name}" is progressing.', touch=True)
            elif (left := self._seconds_to_deadline(deployment, conditions)) is not None \
                    and left <= 0:
                conditions = _set_condition(conditions, "Progressing", "False",
                                            "ProgressDeadlineExceeded",
                                            f'ReplicaSet "{name}" has timed out progressing.')
        status["conditions"] = conditions
        return status

    @staticmethod
    def _seconds_to_deadline(deployment: dict, conditions: list[dict]) -> float | None:
        """Seconds until a rollout without progress times out (DeploymentTimedOut); None
        when no deadline applies (paused, complete, already timed out, no deadline)."""
        spec = deployment.get("spec") or {}
        deadline = spec.get("progressDeadlineSeconds")
        progressing = _condition(conditions, "Progressing")
        if spec.get("paused") or deadline is None or progressing is None or \
                progressing.get("reason") in ("NewReplicaSetAvailable",
                                              "ProgressDeadlineExceeded"):
            return None
        try:
            since = parse_time(progressing.get("lastUpdateTime") or "")
        except ValueError:
            return None
        return int(deadline) - (datetime.now(UTC) - since).total_seconds()

    @staticmethod
    def _complete(deployment: dict, status: Mapping) -> bool:
        wanted = int((deployment.get("spec") or {}).get("replicas", 1))
        return (status["updatedReplicas"] == wanted and status["replicas"] == wanted
                and status["availableReplicas"] == wanted
                and status["observedGeneration"] >= deployment["metadata"].get("generation", 0))

    @staticmethod
    def _progressing(old: Mapping, new: Mapping) -> bool:
        return (new["updatedReplicas"] > int(old.get("updatedReplicas") or 0)
                or new["readyReplicas"] > int(old.get("readyReplicas") or 0)
                or new["availableReplicas"] > int(old.get("availableReplicas") or 0)
                or new["replicas"] < int(old.get("replicas") or 0)
                or not _condition(list(old.get("conditions") or []), "Progressing"))

    async def _sync_status(self, deployment: dict, all_rs: list[dict],
                           new_rs: dict | None) -> None:
        await self._write_status(deployment, self._calculate_status(deployment, all_rs, new_rs))

    async def _write_status(self, deployment: dict, status: dict) -> None:
        """A merge patch without a resourceVersion: this loop is the only writer of the
        status, and a status computed from a stale cache is rewritten by the reconcile
        the newer objects trigger (observedGeneration never claims a newer spec)."""
        left = self._seconds_to_deadline(deployment, list(status.get("conditions") or []))
        if left is not None and left > 0:
            # No event marks the deadline passing: look again when it does.
            self.enqueue(object_key(deployment), after=left + 0.5)
        if status == deployment.get("status"):
            return
        meta = deployment["metadata"]
        with contextlib.suppress(NotFoundError):
            await self.client.patch(DEPLOYMENTS, meta["name"], {"status": status},
                                    namespace=meta["namespace"], subresource="status")
