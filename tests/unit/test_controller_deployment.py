"""The Deployment controller's rules as plain functions: fenceposts, rollout steps, hashes."""

from __future__ import annotations

import pytest

from apiserver.controllers.deployment import (
    HASH_LABEL,
    new_replicas_for_rollout,
    resolve_fenceposts,
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
    hashed = {**TEMPLATE, "metadata": {"labels": {"app": "web", HASH_LABEL: "abc"}}}
    assert templates_equal(hashed, TEMPLATE)
    other = {**TEMPLATE, "metadata": {"labels": {"app": "api", HASH_LABEL: "abc"}}}
    assert not templates_equal(other, TEMPLATE)
    assert templates_equal({"metadata": {"labels": {HASH_LABEL: "x"}}, "spec": {}},
                           {"metadata": {}, "spec": {}})
