"""Well-known label, annotation and taint names (Kubernetes' ``k8s.io/api/.../well_known_*``).

Every component that writes or reads one of these names imports it from here, so a typo
cannot make the EndpointSlice controller and the proxy disagree about which slices
belong to a Service.
"""

from __future__ import annotations

# Node labels the kubelet sets on its own Node.
HOSTNAME_LABEL = "kubernetes.io/hostname"
OS_LABEL = "kubernetes.io/os"
ARCH_LABEL = "kubernetes.io/arch"
NODE_ROLE_LABEL_PREFIX = "node-role.kubernetes.io/"
LEGACY_ROLE_LABEL = "kubernetes.io/role"

# Node taints set by the control plane.
UNREACHABLE_TAINT_KEY = "node.kubernetes.io/unreachable"
UNSCHEDULABLE_TAINT_KEY = "node.kubernetes.io/unschedulable"

# EndpointSlices and Endpoints.
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
SKIP_MIRROR_LABEL = "endpointslice.kubernetes.io/skip-mirror"
ENDPOINTSLICE_CONTROLLER_NAME = "endpointslice-controller.k8s.io"
LAST_CHANGE_TRIGGER_TIME_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"

# Deployments and their ReplicaSets.
POD_TEMPLATE_HASH_LABEL = "pod-template-hash"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
REVISION_HISTORY_ANNOTATION = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS_ANNOTATION = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS_ANNOTATION = "deployment.kubernetes.io/max-replicas"
LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"

# Watch: the bookmark that ends the initial events of ``sendInitialEvents=true``.
INITIAL_EVENTS_END_ANNOTATION = "k8s.io/initial-events-end"
