"""keelson's async Kubernetes REST client, and the object helpers shared with the server.

Everything that talks to an apiserver (the node agent, the proxy, the controllers) goes
through `ApiClient` and `Informer`; label/field selectors, quantities, time formats and
object keys are defined here once and imported by the apiserver too.
"""

from .client import ApiClient, WatchEvent, retry_on_conflict
from .informer import Informer
from .kubeconfig import ClusterConfig, KubeconfigError, load_kubeconfig
from .store import Store

__all__ = [
    "ApiClient",
    "ClusterConfig",
    "Informer",
    "KubeconfigError",
    "Store",
    "WatchEvent",
    "load_kubeconfig",
    "retry_on_conflict",
]
