#!/usr/bin/env bash
# `make up`: start keelson in the background under $DATA_DIR and show how to use it.
# Idempotent: when the cluster already answers /readyz, nothing is started twice.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
data_dir=${DATA_DIR:-/var/lib/keelson}
port=${PORT:-6443}
pidfile="$data_dir/apiserver.pid"
logfile="$data_dir/apiserver.log"
mkdir -p "$data_dir"

ready() { curl -sk --max-time 2 "https://127.0.0.1:$port/readyz" 2>/dev/null | grep -q ok; }

if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null && ready; then
    echo "[up] keelson apiserver already running (pid $(cat "$pidfile"))"
else
    echo "[up] starting keelson apiserver (log: $logfile)"
    setsid nohup "$repo/.venv/bin/keelson" apiserver --data-dir "$data_dir" \
        --secure-port "$port" >>"$logfile" 2>&1 </dev/null &
    echo $! > "$pidfile"
    for _ in $(seq 1 60); do ready && break; sleep 0.5; done
    ready || { echo "[up] apiserver did not become ready; see $logfile" >&2; exit 1; }
fi

kubeconfig="$data_dir/admin.kubeconfig"
echo "[up] ready. Use it with kubectl:"
echo "       export KUBECONFIG=$kubeconfig"
echo "       $repo/.venv/bin/kubectl get namespaces"
KUBECONFIG=$kubeconfig "$repo/.venv/bin/kubectl" get namespaces,services -A
echo "[up] the node agent and service proxy are not wired into \`make up\` yet (README: What does not work yet)."
