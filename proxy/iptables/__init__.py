"""iptables mode of the service proxy: rule rendering (render.py), chain naming (names.py)
and the iptables-restore applier with backend detection (restore.py)."""
