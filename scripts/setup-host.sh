#!/usr/bin/env bash
# Host set-up shared by `make up` and `make test` (INTERFACE.md "Set-up").
#
# Idempotent on purpose: every step first checks whether its result is already there,
# so running it twice installs, starts and builds nothing twice. It is written for a
# fresh Debian 12 machine as root, where PID 1 may not be systemd: in that case it
# starts dockerd itself, with a pull guard (HTTP(S)_PROXY pointing at a closed loopback
# port) so that an accidental image pull fails at once instead of reaching a registry.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
log() { printf '[setup] %s\n' "$*"; }

# --- Debian packages ----------------------------------------------------------------
packages=(docker.io iptables nftables conntrack iproute2 busybox-static curl openssl
          ca-certificates procps kmod python3-venv etcd-server etcd-client prometheus)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # --no-install-recommends keeps docker.io from pulling in extra daemons we do not use;
    # policy-rc.d stops the packages from trying to start services under a non-systemd PID 1.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    rm -f /usr/sbin/policy-rc.d
fi

# --- Python virtual environment -----------------------------------------------------
py=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    log "creating .venv"
    "$py" -m venv .venv
fi
stamp=.venv/.keelson-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    log "installing keelson and its test extras into .venv"
    piplog=$(mktemp)
    if ! { .venv/bin/pip install -q --upgrade pip && .venv/bin/pip install -q -e '.[test]'; } \
            >"$piplog" 2>&1; then
        cat "$piplog" >&2
        rm -f "$piplog"
        echo "setup: pip install failed (output above)" >&2
        exit 1
    fi
    rm -f "$piplog"
    touch "$stamp"
fi

# --- dockerd --------------------------------------------------------------------------
# The client talks to the default socket; a docker client without a daemon fails fast.
export DOCKER_HOST=unix:///var/run/docker.sock
if ! timeout 10 docker info >/dev/null 2>&1; then
    if [ -d /run/systemd/system ]; then
        log "starting docker with systemctl"
        systemctl start docker
    else
        # A dockerd that was killed (e.g. with the session that started it) leaves its pid
        # files behind, and a new dockerd refuses to start over them. Remove them only when
        # no live dockerd/containerd owns them; no process is ever signalled here.
        for pidfile in /var/run/docker.pid /var/run/docker/containerd/containerd.pid; do
            if [ -f "$pidfile" ]; then
                pid=$(cat "$pidfile" 2>/dev/null || true)
                comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
                case "$comm" in
                    dockerd|containerd) ;;
                    *) log "removing stale $pidfile"; rm -f "$pidfile" ;;
                esac
            fi
        done
        log "starting dockerd (no systemd here) with the pull guard"
        mkdir -p /var/log/keelson
        # Pull guard: any registry access goes to a closed loopback port and fails at once.
        HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY= \
            setsid nohup dockerd --host unix:///var/run/docker.sock \
            >/var/log/keelson/dockerd.log 2>&1 </dev/null &
        # Recorded so that tests may restart exactly this dockerd (one keelson started)
        # and never one that systemd or the user runs.
        mkdir -p /run/keelson && echo $! > /run/keelson/dockerd.pid
    fi
    for _ in $(seq 1 60); do
        timeout 5 docker info >/dev/null 2>&1 && break
        sleep 1
    done
    timeout 10 docker info >/dev/null 2>&1 || {
        echo "setup: dockerd did not come up; see /var/log/keelson/dockerd.log" >&2
        exit 1
    }
fi

# --- local images (INTERFACE.md "Local images") --------------------------------------
build_busybox_image() {
    local name=$1 cmd=$2 rootfs
    rootfs=$(mktemp -d)
    trap 'rm -rf "$rootfs"' RETURN
    mkdir -p "$rootfs"/{bin,etc,tmp,proc,sys,dev,var/www,root}
    cp /bin/busybox "$rootfs/bin/busybox"
    for applet in $("$rootfs/bin/busybox" --list); do
        [ "$applet" = busybox ] || ln -sf busybox "$rootfs/bin/$applet"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' \
        > "$rootfs/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' > "$rootfs/etc/group"
    tar -C "$rootfs" -c . | docker import \
        --change "ENV PATH=/bin" --change "CMD $cmd" - "$name" >/dev/null
}
if ! docker image inspect localhost/keelson/busybox:1 >/dev/null 2>&1; then
    log "building localhost/keelson/busybox:1 from busybox-static"
    build_busybox_image localhost/keelson/busybox:1 '["sh"]'
fi
if ! docker image inspect localhost/keelson/pause:1 >/dev/null 2>&1; then
    log "building localhost/keelson/pause:1 from busybox-static"
    # The sandbox only holds the namespaces: sleep forever, exit at once on TERM/INT.
    build_busybox_image localhost/keelson/pause:1 \
        '["/bin/sh", "-c", "trap \"exit 0\" TERM INT; while :; do sleep 3600 & wait $!; done"]'
fi

log "host ready"
