#!/usr/bin/env bash
# `make up`: a single-node keelson cluster in the background (`keelson up`), then the
# example app: apply examples/hello.yaml, wait for it, and curl its Service IP.
# Idempotent: when the cluster already answers /readyz nothing is started twice, and
# `kubectl apply` of the example is a no-op the second time.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
data_dir=${DATA_DIR:-/var/lib/keelson}
port=${PORT:-6443}
pidfile="$data_dir/keelson.pid"
logfile="$data_dir/keelson.log"
kubectl="$repo/.venv/bin/kubectl"
export KUBECONFIG="$data_dir/admin.kubeconfig"
mkdir -p "$data_dir"

ready() { curl -sk --max-time 2 "https://127.0.0.1:$port/readyz" 2>/dev/null | grep -q ok; }

if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null && ready; then
    echo "[up] keelson already running (pid $(cat "$pidfile"))"
else
    echo "[up] starting keelson up (log: $logfile)"
    setsid nohup "$repo/.venv/bin/keelson" up --data-dir "$data_dir" --secure-port "$port" \
        >>"$logfile" 2>&1 </dev/null &
    echo $! > "$pidfile"
    for _ in $(seq 1 120); do ready && break; sleep 0.5; done
    ready || { echo "[up] keelson did not become ready; see $logfile" >&2; exit 1; }
fi

node=$(hostname | tr '[:upper:]' '[:lower:]')
echo "[up] waiting for node $node to be Ready"
"$kubectl" wait --for=condition=Ready "node/$node" --timeout=120s >/dev/null

echo "[up] deploying examples/hello.yaml"
"$kubectl" apply -f "$repo/examples/hello.yaml"
"$kubectl" rollout status deployment/hello --timeout=120s
ip=$("$kubectl" get service hello -o jsonpath='{.spec.clusterIP}')

# Safety: a Service IP is only ever curled once the proxy's keelson-svc0 route holds the
# whole service CIDR, so an unmatched packet is dropped on the node, never sent upstream.
for _ in $(seq 1 60); do
    ip route show dev keelson-svc0 2>/dev/null | grep -q '^10.96.0.0/12' && break
    sleep 0.5
done
ip route show dev keelson-svc0 2>/dev/null | grep -q '^10.96.0.0/12' || {
    echo "[up] the proxy's keelson-svc0 route is missing; not curling $ip" >&2; exit 1; }

echo "[up] curl http://$ip/ (Service hello):"
answered=0
for _ in $(seq 1 40); do
    if reply=$(curl -s --max-time 2 "http://$ip/"); then
        echo "       $reply"
        answered=$((answered + 1))
        [ "$answered" -ge 6 ] && break
    else
        sleep 0.5  # the proxy syncs at most once a second
    fi
done
[ "$answered" -gt 0 ] || { echo "[up] the Service did not answer" >&2; exit 1; }

echo "[up] ready. Use it with kubectl:"
echo "       export KUBECONFIG=$KUBECONFIG"
echo "       $kubectl get nodes,pods,svc -o wide"
