"""ServiceAccount admission: defaulting, existence, the API access volume and its mounts."""

from __future__ import annotations

import copy
import re

import pytest

from apiserver import status
from apiserver.admission.serviceaccount import (
    TOKEN_MOUNT_PATH,
    ServiceAccountAdmission,
    admit_pod,
    token_volume_source,
)
from apiserver.registry import Registry

PODS = Registry().lookup("", "v1", "pods")
SERVICES = Registry().lookup("", "v1", "services")
IMAGE = "localhost/keelson/busybox:1"
MOUNT = {"name": "kube-api-access-abcde", "readOnly": True, "mountPath": TOKEN_MOUNT_PATH}


def pod(**spec) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"containers": [{"name": "c", "image": IMAGE}], **spec}}


def fixed_name() -> str:
    return "kube-api-access-abcde"


class FakeStore:
    """What the plugin asks of the REST store: the registry and a get that may 404."""

    def __init__(self, *accounts: dict) -> None:
        self.registry = Registry()
        self.accounts = {(a["metadata"]["namespace"], a["metadata"]["name"]): a
                         for a in accounts}
        self.gets = 0

    async def get(self, rt, namespace, name):
        self.gets += 1
        assert rt.plural == "serviceaccounts"
        if (namespace, name) not in self.accounts:
            raise status.not_found("", "serviceaccounts", name)
        return copy.deepcopy(self.accounts[(namespace, name)])


def account(name: str = "default", namespace: str = "ns", **fields) -> dict:
    return {"metadata": {"name": name, "namespace": namespace}, **fields}


def test_the_api_access_volume_is_kubes_projected_volume():
    obj = pod(initContainers=[{"name": "i", "image": IMAGE}])
    admit_pod(obj, account(), generate_name=fixed_name)

    spec = obj["spec"]
    assert spec["volumes"] == [{"name": "kube-api-access-abcde",
                                "projected": token_volume_source()}]
    assert token_volume_source() == {
        "defaultMode": 420,
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt",
                           "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ]}
    assert spec["containers"][0]["volumeMounts"] == [MOUNT]
    assert spec["initContainers"][0]["volumeMounts"] == [MOUNT]


@pytest.mark.parametrize(("pod_setting", "account_setting", "mounted"), [
    (None, None, True),
    (False, None, False),
    (None, False, False),
    (True, False, True),   # the pod's preference wins
    (False, True, False),
])
def test_automount_pod_setting_wins_over_the_service_accounts(pod_setting, account_setting,
                                                             mounted):
    spec = {} if pod_setting is None else {"automountServiceAccountToken": pod_setting}
    fields = {} if account_setting is None else \
        {"automountServiceAccountToken": account_setting}
    obj = pod(**spec)
    admit_pod(obj, account(**fields), generate_name=fixed_name)
    assert ("volumes" in obj["spec"]) is mounted


def test_a_container_with_its_own_mount_at_the_token_path_is_left_alone():
    own = {"name": "mine", "mountPath": TOKEN_MOUNT_PATH}
    obj = pod(volumes=[{"name": "mine", "emptyDir": {}}],
              containers=[{"name": "a", "image": IMAGE, "volumeMounts": [own]},
                          {"name": "b", "image": IMAGE}])
    admit_pod(obj, account(), generate_name=fixed_name)
    assert obj["spec"]["containers"][0]["volumeMounts"] == [own]
    assert obj["spec"]["containers"][1]["volumeMounts"] == [MOUNT]
    assert [v["name"] for v in obj["spec"]["volumes"]] == ["mine", "kube-api-access-abcde"]

    everyone_has_one = pod(volumes=[{"name": "mine", "emptyDir": {}}],
                           containers=[{"name": "a", "image": IMAGE, "volumeMounts": [own]}])
    admit_pod(everyone_has_one, account(), generate_name=fixed_name)
    assert [v["name"] for v in everyone_has_one["spec"]["volumes"]] == ["mine"]


def test_an_existing_api_access_volume_is_reused():
    volume = {"name": "kube-api-access-zzzzz", "projected": token_volume_source()}
    obj = pod(volumes=[volume])
    admit_pod(obj, account(), generate_name=fixed_name)
    assert obj["spec"]["volumes"] == [volume]
    assert obj["spec"]["containers"][0]["volumeMounts"][0]["name"] == "kube-api-access-zzzzz"


def test_image_pull_secrets_come_from_the_service_account_when_the_pod_has_none():
    obj = pod()
    admit_pod(obj, account(imagePullSecrets=[{"name": "regcred"}]), generate_name=fixed_name)
    assert obj["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    own = pod(imagePullSecrets=[{"name": "mine"}])
    admit_pod(own, account(imagePullSecrets=[{"name": "regcred"}]), generate_name=fixed_name)
    assert own["spec"]["imagePullSecrets"] == [{"name": "mine"}]


async def test_the_plugin_defaults_the_name_and_mounts_a_random_volume():
    obj = pod()
    await ServiceAccountAdmission().admit_create(PODS, obj, FakeStore(account()))
    assert obj["spec"]["serviceAccountName"] == "default"
    (volume,) = obj["spec"]["volumes"]
    assert re.fullmatch(r"kube-api-access-[bcdfghjklmnpqrstvwxz2456789]{5}", volume["name"])


async def test_the_deprecated_service_account_field_names_the_account():
    obj = pod(serviceAccount="robot")
    await ServiceAccountAdmission().admit_create(PODS, obj, FakeStore(account("robot")))
    assert obj["spec"]["serviceAccountName"] == "robot"


async def test_a_missing_service_account_is_forbidden_with_kubes_message():
    store = FakeStore()
    with pytest.raises(status.StatusError) as caught:
        await ServiceAccountAdmission().admit_create(PODS, pod(serviceAccountName="robot"),
                                                     store)
    assert caught.value.code == 403
    assert caught.value.message == ('pods "web" is forbidden: error looking up service '
                                    'account ns/robot: serviceaccount "robot" not found')
    assert store.gets == 1


async def test_the_default_service_account_is_waited_for_a_little():
    store = FakeStore()
    plugin = ServiceAccountAdmission(retry_interval=lambda: 0)
    with pytest.raises(status.StatusError, match="default"):
        await plugin.admit_create(PODS, pod(), store)
    assert store.gets == 10


async def test_mirror_pods_are_not_changed_and_may_not_reference_accounts():
    mirror = pod()
    mirror["metadata"]["annotations"] = {"kubernetes.io/config.mirror": "hash"}
    before = copy.deepcopy(mirror)
    await ServiceAccountAdmission().admit_create(PODS, mirror, FakeStore())
    assert mirror == before

    mirror["spec"]["serviceAccountName"] = "default"
    with pytest.raises(status.StatusError, match="a mirror pod may not reference service "
                                                 "accounts"):
        await ServiceAccountAdmission().admit_create(PODS, mirror, FakeStore(account()))


async def test_other_kinds_are_not_touched():
    service = {"metadata": {"name": "s", "namespace": "ns"}, "spec": {}}
    await ServiceAccountAdmission().admit_create(SERVICES, service, FakeStore())
    assert service == {"metadata": {"name": "s", "namespace": "ns"}, "spec": {}}
