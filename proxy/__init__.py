"""keelson's service proxy: Services and EndpointSlices programmed into netfilter.

Public surface for the CLI and the node agent: ``ProxyOptions``, ``run_proxy`` and
``cleanup``. Everything else is internal to the package.
"""

from proxy.app import run_proxy
from proxy.cleanup import cleanup
from proxy.options import ProxyOptions

__all__ = ["ProxyOptions", "cleanup", "run_proxy"]
