#!/usr/bin/env bash
# `make down`: stop the `keelson up` that `make up` started, by the PID it recorded.
# Pods keep running (as with kubelet); the next `make up` adopts them.
set -euo pipefail
data_dir=${DATA_DIR:-/var/lib/keelson}
pidfile="$data_dir/keelson.pid"
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    pid=$(cat "$pidfile")
    kill -TERM "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    echo "[down] stopped keelson (pid $pid)"
fi
rm -f "$pidfile"
