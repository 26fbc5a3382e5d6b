"""The Deployment controller's rules as plain functions: fenceposts, rollout steps, hashes."""

from __future__ import annotations

import pytest

from apiclient.labels import POD_TEMPLATE_HASH_LABEL
from controllers.deployment import (
    new_replicas_for_rollout,
    resolve_fenceposts,
    scale_targets,
    template_hash,
    templates_equal,
)

TEMPLATE = {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "localhost/keelson/busybox:1"}]}}


@pytest.mark.parametrize(("surge", "unavailable", "replicas", "expected"), [
    ("25%", "25%", 4, (1, 1)),
    ("25%", "25%", 3, (1, 0)),     # surge 0.75 rounds up, unavailable 0.75 rounds down
    ("25%", "25%", 10, (3, 2)),    # 2.5 -> 3 and 2
    (2, 0, 5, (2, 0)),
    ("0%", "0%", 5, (0, 1)),       # both zero would deadlock: one may be unavailable
    (0, 0, 5, (0, 1)),
    ("100%", "50%", 3, (3, 1)),
    ("3", "1", 5, (3, 1)),
])
def test_fenceposts_round_like_kubernetes(surge: object, unavailable: object, replicas: int,
                                          expected: tuple[int, int]) -> None:
    assert resolve_fenceposts(surge, unavailable, replicas) == expected


def test_new_replica_set_grows_only_within_the_surge() -> None:
    # 4 wanted, surge 1: with 4 old pods the new set may have 1.
    assert new_replicas_for_rollout(4, 1, 0, 4) == 1
    # Already at replicas + surge: no growth until old pods go.
    assert new_replicas_for_rollout(4, 1, 1, 5) == 1
    # Old pods gone: grow to the wanted count, never beyond it.
    assert new_replicas_for_rollout(4, 1, 1, 1) == 4
    assert new_replicas_for_rollout(4, 3, 3, 3) == 4
    # A first rollout (nothing exists yet) starts at full size.
    assert new_replicas_for_rollout(3, 1, 0, 0) == 3


def test_template_hash_is_stable_and_safe() -> None:
    first = template_hash(TEMPLATE)
    assert first == template_hash({"spec": TEMPLATE["spec"], "metadata": TEMPLATE["metadata"]})
    assert set(first) <= set("bcdfghjklmnpqrstvwxz2456789")
    assert 1 <= len(first) <= 10
    changed = {**TEMPLATE, "spec": {"containers": [{"name": "web", "image": "localhost/x:2"}]}}
    assert template_hash(changed) != first
    assert template_hash(TEMPLATE, collision_count=1) != first


def test_templates_compare_without_the_hash_label() -> None:
    hashed = {**TEMPLATE, "metadata": {"labels": {"app": "web", POD_TEMPLATE_HASH_LABEL: "abc"}}}
    assert templates_equal(hashed, TEMPLATE)
    other = {**TEMPLATE, "metadata": {"labels": {"app": "api", POD_TEMPLATE_HASH_LABEL: "abc"}}}
    assert not templates_equal(other, TEMPLATE)
    assert templates_equal({"metadata": {"labels": {POD_TEMPLATE_HASH_LABEL: "x"}}, "spec": {}},
                           {"metadata": {}, "spec": {}})


def _rs(uid: str, replicas: int, *, max_replicas: int | None = None,
        available: int = 0) -> dict:
    annotations = {"deployment.kubernetes.io/max-replicas": str(max_replicas)} \
        if max_replicas is not None else {}
    return {"metadata": {"uid": uid, "annotations": annotations},
            "spec": {"replicas": replicas}, "status": {"availableReplicas": available}}


def _deployment(replicas: int) -> dict:
    return {"spec": {"replicas": replicas, "strategy": {"type": "RollingUpdate"}},
            "status": {"replicas": 0}}


def test_a_lone_active_replicaset_takes_the_whole_scale() -> None:
    assert scale_targets(_deployment(5), _rs("new", 3), [_rs("old", 0)], surge=2) == {"new": 5}
    # Nothing active: the new one gets it.
    assert scale_targets(_deployment(2), _rs("new", 0), [_rs("old", 0)], surge=1) == {"new": 2}


def test_a_saturated_new_replicaset_zeroes_the_old_ones() -> None:
    targets = scale_targets(_deployment(3), _rs("new", 3, available=3), [_rs("old", 1)],
                            surge=1)
    assert targets == {"old": 0}


def test_mid_rollout_scale_is_shared_in_proportion() -> None:
    # 10 replicas, surge 3 (max 13): new 5 + old 8 running. Scale to 20 (surge 5, max 25).
    targets = scale_targets(_deployment(20), _rs("new", 5, max_replicas=13),
                            [_rs("old", 8, max_replicas=13)], surge=5)
    assert targets == {"new": 10, "old": 15}  # 5*25/13 = 9.6 -> 10; 8*25/13 = 15.4 -> 15
    assert sum(targets.values()) == 25
    # And back down to 5 (surge 2, max 7): the change is shared, leftovers to the largest.
    down = scale_targets(_deployment(5), _rs("new", 10, max_replicas=25),
                         [_rs("old", 15, max_replicas=25)], surge=2)
    assert sum(down.values()) == 7 and all(v >= 0 for v in down.values())
    assert down["old"] >= down["new"]
