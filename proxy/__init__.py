"""keelson's service proxy: Services and EndpointSlices programmed into netfilter.

Public surface: ``ProxyOptions``, ``run_proxy`` and ``cleanup`` for the CLI and the node
daemon; the sync engine's parts (``Proxier`` with its ``Iptables`` applier, ``NodeInfo``,
``ProxyHealth``, ``ProxyMetrics``, the informer records ``service_info`` /
``slice_info``, and ``remove_all``) for callers that drive syncs themselves, such as
``bench/proxy_sync.py``. Everything else is internal to the package.
"""

from proxy.app import run_proxy
from proxy.cleanup import cleanup
from proxy.healthz import ProxyHealth
from proxy.iptables.render import NodeInfo
from proxy.iptables.restore import Iptables, remove_all
from proxy.metrics import ProxyMetrics
from proxy.objects import service_info, slice_info
from proxy.options import ProxyOptions
from proxy.proxier import Proxier

__all__ = [
    "Iptables",
    "NodeInfo",
    "Proxier",
    "ProxyHealth",
    "ProxyMetrics",
    "ProxyOptions",
    "cleanup",
    "remove_all",
    "run_proxy",
    "service_info",
    "slice_info",
]
