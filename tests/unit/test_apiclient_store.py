"""Store: keys, secondary indexes kept in step, and the relist diff."""

import pytest

from apiclient.store import Store, namespace_index


def obj(name, *, namespace="default", rv="1", node="n1"):
    return {
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": rv},
        "spec": {"nodeName": node},
    }


def by_node(o):
    return [o["spec"]["nodeName"]] if o["spec"].get("nodeName") else []


def test_upsert_get_delete():
    store = Store()
    assert store.upsert(obj("a")) is None
    old = store.upsert(obj("a", rv="2"))
    assert old["metadata"]["resourceVersion"] == "1"
    assert store.get("default/a")["metadata"]["resourceVersion"] == "2"
    assert store.keys() == ["default/a"]
    assert len(store) == 1
    assert "default/a" in store
    assert store.delete("default/a")["metadata"]["name"] == "a"
    assert store.delete("default/a") is None
    assert store.list() == []


def test_indexes_follow_updates_and_deletes():
    store = Store(indexers={"node": by_node, "namespace": namespace_index})
    store.upsert(obj("a", node="n1"))
    store.upsert(obj("b", node="n1", namespace="kube-system"))
    assert [o["metadata"]["name"] for o in store.by_index("node", "n1")] == ["a", "b"]
    store.upsert(obj("a", node="n2", rv="2"))  # moved to another node
    assert [o["metadata"]["name"] for o in store.by_index("node", "n1")] == ["b"]
    assert [o["metadata"]["name"] for o in store.by_index("node", "n2")] == ["a"]
    store.delete("kube-system/b")
    assert store.by_index("node", "n1") == []
    assert store.index_values("node") == ["n2"]
    assert store.index_values("namespace") == ["default"]
    with pytest.raises(KeyError, match="no index named 'zone'"):
        store.by_index("zone", "x")


def test_replace_reports_added_changed_and_vanished():
    store = Store(indexers={"node": by_node})
    store.upsert(obj("same"))
    store.upsert(obj("changed"))
    store.upsert(obj("gone", node="n9"))
    diff = store.replace([obj("same"), obj("changed", rv="5"), obj("new")])
    assert [o["metadata"]["name"] for o in diff.added] == ["new"]
    assert [
        (old["metadata"]["resourceVersion"], new["metadata"]["resourceVersion"])
        for old, new in diff.updated
    ] == [("1", "5")]
    assert [o["metadata"]["name"] for o in diff.deleted] == ["gone"]
    assert sorted(store.keys()) == ["default/changed", "default/new", "default/same"]
    assert store.by_index("node", "n9") == []
    assert not store.replace(store.list())  # nothing changed: an empty diff


def test_cluster_scoped_keys():
    store = Store()
    store.upsert({"metadata": {"name": "node1"}})
    assert store.keys() == ["node1"]


def test_add_indexer_indexes_existing_objects() -> None:
    store = Store()
    store.upsert({"metadata": {"name": "a", "namespace": "n"}, "spec": {"nodeName": "x"}})
    store.add_indexer("node", lambda o: [o["spec"]["nodeName"]])
    assert [o["metadata"]["name"] for o in store.by_index("node", "x")] == ["a"]
    store.upsert({"metadata": {"name": "b", "namespace": "n"}, "spec": {"nodeName": "x"}})
    assert len(store.by_index("node", "x")) == 2
