"""The kubelet API requires a client certificate from the cluster CA (kubelet's
--client-ca-file), so only the apiserver (and cluster admins) can read pods and logs."""

from __future__ import annotations

import ssl
from pathlib import Path

import aiohttp
import pytest

from apiserver.auth.pki import ensure_pki, issue_client_cert
from nodeagent.runtime.fake import FakeRuntime
from nodeagent.server import build_app, ensure_serving_cert, start_kubelet_server
from tests.support.apiserver import free_port


async def test_kubelet_api_requires_a_cluster_client_certificate(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path / "cluster", hostnames=["kt"], ips=["127.0.0.1"])
    cert, key = ensure_serving_cert(tmp_path / "kubelet", node_name="kt-node",
                                    addresses=["127.0.0.1"])
    port = free_port()
    app = build_app(runtime=FakeRuntime(), pods=lambda: [], healthy=lambda: True)
    runner = await start_kubelet_server(app, port=port, cert=cert, key=key, host="127.0.0.1",
                                        client_ca=pki.ca_cert.read_bytes())
    url = f"https://127.0.0.1:{port}/pods"
    try:
        anonymous = ssl.create_default_context()
        anonymous.check_hostname, anonymous.verify_mode = False, ssl.CERT_NONE
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientError):
                async with session.get(url, ssl=anonymous) as response:
                    await response.read()

        client_cert, client_key = issue_client_cert(
            pki, common_name="kube-apiserver-kubelet-client", groups=["system:masters"])
        (tmp_path / "c.crt").write_bytes(client_cert)
        (tmp_path / "c.key").write_bytes(client_key)
        authenticated = ssl.create_default_context()
        authenticated.check_hostname, authenticated.verify_mode = False, ssl.CERT_NONE
        authenticated.load_cert_chain(tmp_path / "c.crt", tmp_path / "c.key")
        async with aiohttp.ClientSession() as session, \
                session.get(url, ssl=authenticated) as response:
            assert response.status == 200
            assert (await response.json())["kind"] == "PodList"
    finally:
        await runner.cleanup()
