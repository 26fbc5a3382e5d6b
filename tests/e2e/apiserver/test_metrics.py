"""``/metrics`` of a real ``keelson apiserver``: the families Prometheus dashboards use.

The scrape needs authentication like every non-health path, and ``promtool check
metrics`` (Prometheus' own linter) must find nothing to complain about.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.apiserver import ApiServer

FAMILIES = ("apiserver_request", "apiserver_request_duration_seconds",
            "apiserver_watch_events", "apiserver_storage_objects",
            "apiserver_current_inflight_requests")


def scrape(server: ApiServer) -> str:
    code, headers, body = server.http("GET", "/metrics")
    assert code == 200
    assert headers["Content-Type"].startswith("text/plain")
    return body.decode() if isinstance(body, bytes) else str(body)


def test_metrics_families_and_values(apiserver: ApiServer, namespace: str) -> None:
    apiserver.http("POST", f"/api/v1/namespaces/{namespace}/configmaps",
                   {"metadata": {"name": "kt-m"}})
    apiserver.http("GET", f"/api/v1/namespaces/{namespace}/configmaps?watch=true"
                   "&resourceVersion=0&timeoutSeconds=1")
    text = scrape(apiserver)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in FAMILIES:
        assert name in families, sorted(families)

    created = [s for s in families["apiserver_request"].samples
               if s.name == "apiserver_request_total" and s.labels.get("verb") == "POST"
               and s.labels.get("resource") == "configmaps" and s.labels.get("code") == "201"]
    assert created and created[0].value >= 1
    assert any(s.labels.get("kind") == "ConfigMap" and s.value >= 1
               for s in families["apiserver_watch_events"].samples)
    objects = {s.labels.get("resource"): s.value
               for s in families["apiserver_storage_objects"].samples}
    assert objects["namespaces"] >= 5 and objects["configmaps"] >= 1
    assert "kt-m" not in text  # no object names in labels

    code, _, body = apiserver.http("GET", "/metrics", authenticated=False)
    assert (code, body["reason"]) == (401, "Unauthorized")


def test_promtool_is_clean(apiserver: ApiServer) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package prometheus) is not installed")
    apiserver.http("GET", "/api/v1/namespaces")
    result = subprocess.run([promtool, "check", "metrics"], input=scrape(apiserver),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and not result.stdout.strip() and \
        not result.stderr.strip(), result.stdout + result.stderr
