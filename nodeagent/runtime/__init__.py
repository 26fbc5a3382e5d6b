"""Container runtime seam: the protocol the pod workers use, a Docker implementation, a fake."""
