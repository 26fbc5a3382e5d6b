"""PATCH semantics: strategic merge patch as Kubernetes applies it, merge patch, JSON patch.

The strategic cases use patches of the shape kubectl sends. Besides the expected outcomes
written out here, every strategic case is also checked against kubectl's own implementation
(`kubectl patch --local`, the Go strategicpatch package) when kubectl is installed.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from apiserver.patch import (
    PatchError,
    apply_json_patch,
    apply_merge_patch,
    apply_strategic_merge_patch,
)

KUBECTL = shutil.which("kubectl") or str(Path(".venv/bin/kubectl").resolve())


def deployment() -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "labels": {"app": "web", "tier": "front"},
            "finalizers": ["example.com/a", "example.com/b"],
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "localhost/keelson/busybox:1",
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                            "ports": [{"containerPort": 80}, {"containerPort": 443}],
                        },
                        {"name": "sidecar", "image": "localhost/keelson/pause:1"},
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                },
            },
        },
    }


def smp(obj: dict, patch: dict) -> dict:
    return apply_strategic_merge_patch(obj, patch, api_version="apps/v1", kind="Deployment")


def pod_spec(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]


# (name, patch, check) — check receives the patched Deployment.
STRATEGIC_CASES = [
    (
        "containers merged by name",
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "img:2"}]}}}},
        lambda out: (
            [c["image"] for c in pod_spec(out)["containers"]]
            == ["img:2", "localhost/keelson/pause:1"]
            and pod_spec(out)["containers"][0]["env"][1] == {"name": "B", "value": "2"}
        ),
    ),
    (
        # Upstream orders items the server does not know before the server's own ones.
        "new container added in front",
        {"spec": {"template": {"spec": {"containers": [{"name": "new", "image": "img:3"}]}}}},
        lambda out: [c["name"] for c in pod_spec(out)["containers"]] == ["new", "app", "sidecar"],
    ),
    (
        "ports merged by containerPort",
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": "app", "ports": [{"containerPort": 443, "name": "https"}]}
                        ]
                    }
                }
            }
        },
        lambda out: (
            pod_spec(out)["containers"][0]["ports"]
            == [{"containerPort": 80}, {"containerPort": 443, "name": "https"}]
        ),
    ),
    (
        "env item deleted with $patch: delete",
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [{"name": "app", "env": [{"$patch": "delete", "name": "A"}]}]
                    }
                }
            }
        },
        lambda out: pod_spec(out)["containers"][0]["env"] == [{"name": "B", "value": "2"}],
    ),
    (
        "kubectl apply 3-way patch: new image, env var removed, $setElementOrder",
        {
            "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "x"}},
            "spec": {
                "template": {
                    "spec": {
                        "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
                        "containers": [
                            {
                                "$setElementOrder/env": [{"name": "A"}],
                                "env": [{"$patch": "delete", "name": "B"}],
                                "image": "img:2",
                                "name": "app",
                            }
                        ],
                    }
                }
            },
        },
        lambda out: (
            pod_spec(out)["containers"][0]["image"] == "img:2"
            and pod_spec(out)["containers"][0]["env"] == [{"name": "A", "value": "1"}]
            and [c["name"] for c in pod_spec(out)["containers"]] == ["app", "sidecar"]
            and "$setElementOrder/containers" not in pod_spec(out)
        ),
    ),
    (
        "$setElementOrder reorders the list",
        {
            "spec": {
                "template": {
                    "spec": {
                        "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}],
                        "containers": [{"name": "app", "image": "img:2"}],
                    }
                }
            }
        },
        lambda out: [c["name"] for c in pod_spec(out)["containers"]] == ["sidecar", "app"],
    ),
    (
        "$retainKeys drops the fields it does not list (strategy type change)",
        {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}},
        lambda out: out["spec"]["strategy"] == {"type": "Recreate"},
    ),
    (
        "$retainKeys on a volume swaps its source",
        {
            "spec": {
                "template": {
                    "spec": {
                        "volumes": [
                            {
                                "$retainKeys": ["hostPath", "name"],
                                "name": "data",
                                "hostPath": {"path": "/tmp/kt"},
                            }
                        ]
                    }
                }
            }
        },
        lambda out: pod_spec(out)["volumes"] == [{"name": "data", "hostPath": {"path": "/tmp/kt"}}],
    ),
    (
        "finalizers (primitive list, merge) are unioned",
        {"metadata": {"finalizers": ["example.com/b", "example.com/c"]}},
        lambda out: (
            out["metadata"]["finalizers"] == ["example.com/a", "example.com/b", "example.com/c"]
        ),
    ),
    (
        "$deleteFromPrimitiveList removes finalizers",
        {"metadata": {"$deleteFromPrimitiveList/finalizers": ["example.com/a"]}},
        lambda out: out["metadata"]["finalizers"] == ["example.com/b"],
    ),
    (
        "$patch: replace in a map replaces the map",
        {"spec": {"selector": {"$patch": "replace", "matchLabels": {"run": "web"}}}},
        lambda out: out["spec"]["selector"] == {"matchLabels": {"run": "web"}},
    ),
    (
        "$patch: replace as a list item replaces the list",
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [{"name": "only", "image": "img:9"}, {"$patch": "replace"}]
                    }
                }
            }
        },
        lambda out: pod_spec(out)["containers"] == [{"name": "only", "image": "img:9"}],
    ),
    (
        "$patch: delete in a map removes its content",
        {"spec": {"strategy": {"$patch": "delete"}}},
        lambda out: out["spec"]["strategy"] == {},
    ),
    (
        "null deletes a field and a label",
        {"metadata": {"labels": {"tier": None}}, "spec": {"replicas": None}},
        lambda out: out["metadata"]["labels"] == {"app": "web"} and "replicas" not in out["spec"],
    ),
    (
        "lists without a strategy replace (container args)",
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "args": ["x"]}]}}}},
        lambda out: pod_spec(out)["containers"][0]["args"] == ["x"],
    ),
    (
        "kubectl scale / label shaped patches",
        {"metadata": {"labels": {"env": "prod"}}, "spec": {"replicas": 5}},
        lambda out: (
            out["spec"]["replicas"] == 5
            and out["metadata"]["labels"] == {"app": "web", "tier": "front", "env": "prod"}
        ),
    ),
    (
        "kubectl rollout restart shaped patch",
        {
            "spec": {
                "template": {
                    "metadata": {
                        "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"}
                    }
                }
            }
        },
        lambda out: (
            out["spec"]["template"]["metadata"]["annotations"]
            == {"kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"}
            and out["spec"]["template"]["metadata"]["labels"] == {"app": "web"}
        ),
    ),
]


@pytest.mark.parametrize(
    ("patch", "check"),
    [case[1:] for case in STRATEGIC_CASES],
    ids=[case[0] for case in STRATEGIC_CASES],
)
def test_strategic_merge_patch_outcome(patch: dict, check) -> None:
    original = deployment()
    patch_before = copy.deepcopy(patch)

    out = smp(original, patch)

    assert check(out), json.dumps(out, indent=1)
    assert original == deployment(), "the object must not be mutated"
    assert patch == patch_before, "the patch must not be mutated"


@pytest.mark.skipif(not Path(KUBECTL).exists(), reason="kubectl is not installed")
@pytest.mark.parametrize(
    "patch", [case[1] for case in STRATEGIC_CASES], ids=[case[0] for case in STRATEGIC_CASES]
)
def test_strategic_merge_patch_matches_kubectl(patch: dict, tmp_path: Path) -> None:
    manifest = tmp_path / "deployment.json"
    manifest.write_text(json.dumps(deployment()))
    completed = subprocess.run(
        [
            *(KUBECTL, "patch", "--local", "-f", str(manifest), "--type", "strategic"),
            *("-p", json.dumps(patch), "-o", "json"),
        ],
        capture_output=True,
        text=True,
        env={"KUBECONFIG": "/dev/null", "PATH": "/usr/bin:/bin"},
        timeout=30,
        check=True,
    )
    assert smp(deployment(), patch) == json.loads(completed.stdout)


def test_unknown_kind_falls_back_to_merge_patch() -> None:
    obj = {"apiVersion": "example.com/v1", "kind": "Widget", "spec": {"items": [1, 2], "a": 1}}

    out = apply_strategic_merge_patch(
        obj, {"spec": {"items": [3], "a": None}}, api_version="example.com/v1", kind="Widget"
    )

    assert out == {"apiVersion": "example.com/v1", "kind": "Widget", "spec": {"items": [3]}}


def test_strategic_merge_patch_on_service_ports_merges_by_port() -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]},
    }

    out = apply_strategic_merge_patch(
        service,
        {"spec": {"ports": [{"port": 80, "targetPort": 9090}]}},
        api_version="v1",
        kind="Service",
    )

    assert out["spec"]["ports"] == [{"port": 80, "targetPort": 9090}, {"port": 443}]


def test_strategic_merge_patch_without_merge_key_in_item_is_rejected() -> None:
    with pytest.raises(PatchError, match="merge key"):
        smp(deployment(), {"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}})


def test_strategic_merge_patch_rejects_unknown_directive() -> None:
    with pytest.raises(PatchError, match="directive"):
        smp(deployment(), {"spec": {"strategy": {"$patch": "explode"}}})


def test_strategic_merge_patch_rejects_non_object() -> None:
    with pytest.raises(PatchError):
        smp(deployment(), ["not", "an", "object"])


# RFC 7386 appendix A examples.
@pytest.mark.parametrize(
    ("target", "patch", "expected"),
    [
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patch_rfc7386_examples(target: dict, patch: dict, expected: dict) -> None:
    target_before = copy.deepcopy(target)

    assert apply_merge_patch(target, patch) == expected
    assert target == target_before


def test_merge_patch_replaces_lists_wholesale() -> None:
    out = apply_merge_patch(deployment(), {"metadata": {"finalizers": ["x"]}})

    assert out["metadata"]["finalizers"] == ["x"]


def test_merge_patch_must_be_an_object() -> None:
    with pytest.raises(PatchError):
        apply_merge_patch({"a": 1}, [1, 2])


def test_json_patch_operations() -> None:
    original = deployment()

    out = apply_json_patch(
        original,
        [
            {"op": "replace", "path": "/spec/replicas", "value": 3},
            {"op": "add", "path": "/metadata/labels/env", "value": "prod"},
            {"op": "remove", "path": "/spec/template/spec/containers/1"},
            {"op": "test", "path": "/metadata/name", "value": "web"},
        ],
    )

    assert out["spec"]["replicas"] == 3
    assert out["metadata"]["labels"]["env"] == "prod"
    assert [c["name"] for c in pod_spec(out)["containers"]] == ["app"]
    assert original == deployment()


def test_json_patch_failed_test_operation_is_a_patch_error() -> None:
    with pytest.raises(PatchError, match="could not be applied"):
        apply_json_patch(deployment(), [{"op": "test", "path": "/spec/replicas", "value": 7}])


@pytest.mark.parametrize(
    "patch",
    [
        {"op": "replace", "path": "/spec/replicas", "value": 3},
        [{"op": "remove", "path": "/spec/nothing/here"}],
        [{"op": "frobnicate", "path": "/spec"}],
        [{"path": "/spec"}],
    ],
)
def test_json_patch_malformed_or_inapplicable_is_a_patch_error(patch) -> None:
    with pytest.raises(PatchError):
        apply_json_patch(deployment(), patch)
