"""The resource table builds the same paths as Kubernetes."""

import pytest

from apiclient.resources import (
    ALL_RESOURCES,
    DEPLOYMENTS,
    ENDPOINTSLICES,
    LEASES,
    NAMESPACES,
    NODES,
    PODS,
    resource_for_kind,
)


def test_core_paths():
    assert PODS.path() == "/api/v1/pods"
    assert PODS.path(namespace="ns") == "/api/v1/namespaces/ns/pods"
    assert PODS.path(namespace="ns", name="p") == "/api/v1/namespaces/ns/pods/p"
    assert PODS.path(namespace="ns", name="p", subresource="status") == (
        "/api/v1/namespaces/ns/pods/p/status"
    )
    assert NODES.path(name="n1", subresource="status") == "/api/v1/nodes/n1/status"
    assert NAMESPACES.path(name="default") == "/api/v1/namespaces/default"


def test_group_paths_and_api_versions():
    assert DEPLOYMENTS.path(namespace="ns", name="d", subresource="scale") == (
        "/apis/apps/v1/namespaces/ns/deployments/d/scale"
    )
    assert ENDPOINTSLICES.path() == "/apis/discovery.k8s.io/v1/endpointslices"
    assert LEASES.api_version == "coordination.k8s.io/v1"
    assert PODS.api_version == "v1"
    assert DEPLOYMENTS.list_kind == "DeploymentList"


def test_misuse_is_refused():
    with pytest.raises(ValueError, match="cluster-scoped"):
        NODES.path(namespace="ns")
    with pytest.raises(ValueError, match="needs a name"):
        PODS.path(namespace="ns", subresource="status")


def test_lookup_by_kind():
    assert resource_for_kind("apps/v1", "ReplicaSet").plural == "replicasets"
    assert resource_for_kind("v1", "Secret").plural == "secrets"
    assert len({r.plural for r in ALL_RESOURCES}) == 13
    with pytest.raises(KeyError):
        resource_for_kind("v1", "NoSuchKind")
