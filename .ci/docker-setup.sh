#!/usr/bin/env bash
# shellcheck shell=bash
# Start a private Docker engine (and a loopback registry) for pycm's docker
# tests.  Source it, then call the functions:
#
#   source .ci/docker-setup.sh
#   pycm_docker_setup      # installs if needed, starts dockerd + registry,
#                          # builds the test image, exports PYCM_* variables
#   ...run the tests...
#   pycm_docker_teardown   # stops both, removes the private directories
#
# Or run it as a script: `.ci/docker-setup.sh setup` prints `export ...`
# lines for `eval "$(.ci/docker-setup.sh setup)"`, and `.ci/docker-setup.sh
# teardown DIR` stops what `setup` started in DIR.
#
# Exported after setup:
#   PYCM_DOCKER_HOST     unix://DIR/docker.sock, the private engine
#   PYCM_DOCKER_PIDFILE  its pidfile (fault tests kill and restart it)
#   PYCM_DOCKERD_ARGS    the dockerd command line, to restart it the same way
#   PYCM_TEST_IMAGE      pycm-test/busybox:latest, a busybox-static image
#   PYCM_TEST_REGISTRY   127.0.0.1:PORT, a registry holding
#                        PORT/pycm-test/busybox:latest for pull tests
#   PYCM_REQUIRE_DOCKER  1: docker tests fail instead of skipping
#   PYCM_DOCKER_DIR      the private directory (for teardown)
#
# Everything lives in one directory (PYCM_DOCKER_DIR, default a mktemp -d under
# /tmp: a UNIX socket path must stay under 108 bytes).  Takes ~5-15 s when
# the packages are already installed.

# dockerd, runc and containerd live in the sbin directories, which a
# non-login shell may not have on its PATH.
export PATH=/usr/local/sbin:/usr/sbin:/sbin:$PATH

_pycm_log() { echo "docker-setup: $*" >&2; }

# _pycm_alive PID: is it running (a zombie nobody reaped is not)?
_pycm_alive() {
    local state
    state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}

# _pycm_kill_under DIR: SIGKILL what still runs from DIR (the private
# containerd, the shims it started, with DIR/containerd.sock on their
# command line) and every descendant of those (the containers' processes,
# whose command lines do not name DIR).
_pycm_kill_under() {
    local dir=$1 p pid ppid found=" " more=1
    for p in /proc/[0-9]*; do
        [ "${p#/proc/}" = "$$" ] && continue
        if { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -qF -- "$dir/"; then
            found="$found${p#/proc/} "
        fi
    done
    [ "$found" = " " ] && return 0
    while [ "$more" = 1 ]; do
        more=0
        for p in /proc/[0-9]*; do
            pid=${p#/proc/}
            case "$found" in *" $pid "*) continue ;; esac
            # The 4th field of stat, after the parenthesised command name.
            ppid=$(sed 's/.*) [A-Za-z] \([0-9]*\).*/\1/' "$p/stat" 2>/dev/null) || continue
            case "$found" in
            *" $ppid "*)
                found="$found$pid "
                more=1
                ;;
            esac
        done
    done
    for pid in $found; do
        [ "$pid" = "$$" ] || kill -9 "$pid" 2>/dev/null || true
    done
}

# pycm_docker_start_containerd DIR: a containerd of DIR's own (socket
# DIR/containerd.sock), unless it runs already.  dockerd without
# --containerd uses a system containerd whenever
# /run/containerd/containerd.sock exists (as after `apt-get install
# docker.io` on a systemd machine), sharing it with the host's engine;
# with its own, the engine, its shims and its containers are the tests'
# alone, and teardown finds them all under DIR.
pycm_docker_start_containerd() {
    local dir=$1 pid i
    if [ -f "$dir/containerd.pid" ] && _pycm_alive "$(cat "$dir/containerd.pid")" &&
        [ -S "$dir/containerd.sock" ]; then
        return 0
    fi
    mkdir -p "$dir/containerd/root" "$dir/containerd/state" "$dir/containerd/opt"
    cat >"$dir/containerd.toml" <<END_OF_TOML
version = 2
root = "$dir/containerd/root"
state = "$dir/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$dir/containerd.sock"
[ttrpc]
  address = "$dir/containerd.sock.ttrpc"
[debug]
  address = "$dir/containerd-debug.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/containerd/opt"
END_OF_TOML
    rm -f "$dir/containerd.sock" "$dir/containerd.sock.ttrpc" "$dir/containerd-debug.sock"
    containerd --config "$dir/containerd.toml" </dev/null >>"$dir/containerd.log" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/containerd.pid"
    for i in $(seq 1 100); do
        [ -S "$dir/containerd.sock" ] && return 0
        _pycm_alive "$pid" || break
        sleep 0.1
    done
    _pycm_log "containerd did not start; its log:"
    tail -n 30 "$dir/containerd.log" >&2
    return 1
}

pycm_docker_install() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    _pycm_static_busybox >/dev/null || missing+=(busybox-static)
    command -v docker-registry >/dev/null || missing+=(docker-registry)
    if [ "${#missing[@]}" -gt 0 ]; then
        _pycm_log "installing ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
    fi
}

# pycm_docker_start_engine DIR: start dockerd with its state in DIR; wait.
pycm_docker_start_engine() {
    local dir=$1 pid
    mkdir -p "$dir/data" "$dir/exec"
    # A dockerd killed with SIGKILL leaves its pidfile, which stops the next.
    if [ -f "$dir/dockerd.pid" ] && ! _pycm_alive "$(cat "$dir/dockerd.pid")"; then
        rm -f "$dir/dockerd.pid"
    fi
    # Its containerd child dies with it; where PID 1 does not reap, the
    # zombie's pid in containerd.pid makes the next dockerd wait for it.
    pycm_docker_start_containerd "$dir" || return 1
    # Its own containerd, and namespaces of its own in it besides.
    local args="--data-root $dir/data --exec-root $dir/exec --storage-driver vfs \
--iptables=false --ip-masq=false --bridge=none --host unix://$dir/docker.sock \
--pidfile $dir/dockerd.pid --containerd $dir/containerd.sock \
--containerd-namespace pycm-test --containerd-plugins-namespace pycm-test-plugins"
    # shellcheck disable=SC2086
    dockerd $args </dev/null >>"$dir/dockerd.log" 2>&1 &
    pid=$!
    PYCM_DOCKERD_ARGS=$args
    local i
    for i in $(seq 1 150); do
        if timeout -k 2 5 docker -H "unix://$dir/docker.sock" version >/dev/null 2>&1; then
            return 0
        fi
        _pycm_alive "$pid" || break
        sleep 0.2
    done
    _pycm_log "dockerd did not answer; its log:"
    tail -n 30 "$dir/dockerd.log" >&2
    return 1
}

# _pycm_static_busybox: print the path of a statically linked busybox.
_pycm_static_busybox() {
    local bb
    for bb in /bin/busybox /usr/bin/busybox "$(command -v busybox 2>/dev/null)"; do
        [ -n "$bb" ] && [ -x "$bb" ] || continue
        if ! ldd "$bb" >/dev/null 2>&1; then
            echo "$bb"
            return 0
        fi
    done
    return 1
}

# _pycm_busybox_rootfs BUSYBOX ROOT: a root fs of a static busybox, its
# applets linked to it (never busybox to itself), for docker and podman import.
_pycm_busybox_rootfs() {
    local bb=$1 root=$2 applet
    rm -rf "$root"
    mkdir -p "$root/bin" "$root/tmp" "$root/etc" "$root/proc" "$root/sys" "$root/dev"
    cp "$bb" "$root/bin/busybox"
    for applet in $("$bb" --list); do
        [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
    done
    echo "root:x:0:0:root:/:/bin/sh" >"$root/etc/passwd"
    echo "root:x:0:" >"$root/etc/group"
}

# pycm_docker_build_image DIR HOST TAG: docker import a busybox root fs.
pycm_docker_build_image() {
    local dir=$1 host=$2 tag=$3 bb root
    bb=$(_pycm_static_busybox) || {
        _pycm_log "no statically linked busybox (apt-get install busybox-static)"
        return 1
    }
    root="$dir/rootfs"
    _pycm_busybox_rootfs "$bb" "$root"
    tar -C "$root" -c . | timeout -k 5 120 docker -H "$host" import \
        -c 'ENV PATH=/bin' -c 'CMD ["sh"]' - "$tag" >/dev/null
    rm -rf "$root"
}

# pycm_docker_start_registry DIR PORT: a loopback registry on 127.0.0.1:PORT.
pycm_docker_start_registry() {
    local dir=$1 port=$2 i
    mkdir -p "$dir/registry"
    cat >"$dir/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/registry
http:
  addr: 127.0.0.1:$port
EOF
    docker-registry serve "$dir/registry.yml" </dev/null >>"$dir/registry.log" 2>&1 &
    echo $! >"$dir/registry.pid"
    for i in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    _pycm_log "registry did not start; its log:"
    tail -n 20 "$dir/registry.log" >&2
    return 1
}

_pycm_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

pycm_docker_setup() {
    pycm_docker_install || return 1
    local dir=${PYCM_DOCKER_DIR:-$(mktemp -d /tmp/pycm-docker.XXXXXX)}
    local host="unix://$dir/docker.sock"
    local image=pycm-test/busybox:latest port
    pycm_docker_start_engine "$dir" || return 1
    pycm_docker_build_image "$dir" "$host" "$image" || return 1
    port=$(_pycm_free_port)
    pycm_docker_start_registry "$dir" "$port" || return 1
    # 127.0.0.0/8 registries are insecure (plain HTTP) by default.
    timeout -k 5 30 docker -H "$host" tag "$image" "127.0.0.1:$port/$image" &&
        timeout -k 5 120 docker -H "$host" push "127.0.0.1:$port/$image" >/dev/null &&
        timeout -k 5 30 docker -H "$host" rmi "127.0.0.1:$port/$image" >/dev/null || return 1
    export PYCM_DOCKER_DIR=$dir
    export PYCM_DOCKER_HOST=$host
    export PYCM_DOCKER_PIDFILE=$dir/dockerd.pid
    export PYCM_DOCKERD_ARGS
    export PYCM_TEST_IMAGE=$image
    export PYCM_TEST_REGISTRY=127.0.0.1:$port
    export PYCM_REQUIRE_DOCKER=1
    _pycm_log "engine at $host, registry at 127.0.0.1:$port, image $image"
}

# pycm_docker_diagnose [DIR]: a short account of the engine's health, for
# a CI log after failed tests: does it answer, what does it hold, what did
# it and its containerd last log, and a goroutine dump's path (SIGUSR1).
pycm_docker_diagnose() {
    local dir=${1:-${PYCM_DOCKER_DIR:-}} pid
    [ -n "$dir" ] && [ -d "$dir" ] || return 0
    echo "== docker engine diagnostics ($dir)"
    echo "load: $(cut -d' ' -f1-3 /proc/loadavg); free MiB: $(free -m | awk '/^Mem:/ {print $7}');" \
        "disk: $(df -h "$dir" | awk 'NR==2 {print $4 " free"}')"
    if timeout -k 2 5 docker -H "unix://$dir/docker.sock" version >/dev/null 2>&1; then
        echo "engine answers; containers: $(timeout -k 2 10 docker -H "unix://$dir/docker.sock" \
            ps -aq 2>/dev/null | wc -l)"
    else
        echo "engine does NOT answer within 5 s"
    fi
    if [ -f "$dir/dockerd.pid" ] && pid=$(cat "$dir/dockerd.pid") && _pycm_alive "$pid"; then
        kill -USR1 "$pid" 2>/dev/null && sleep 1
        # Where the engine's goroutines wait on a lock: the first docker
        # frame of each, counted (a deadlock shows as one frame, many times).
        local dump
        dump=$(ls -t "$dir"/exec/goroutine-stacks-*.log "$dir"/data/goroutine-stacks-*.log \
            2>/dev/null | head -n 1) || true
        if [ -n "$dump" ]; then
            echo "-- goroutines waiting on locks, by first docker frame ($dump)"
            awk '/^goroutine / {waiting = /semacquire|sync.Mutex|sync.RWMutex/; seen = 0; next}
                waiting && !seen && /^github.com\/docker\/docker\// {print; seen = 1}' "$dump" |
                sed 's/(0x[^)]*)/()/' | sort | uniq -c | sort -rn | head -n 6 || true
        fi
    fi
    local f
    for f in dockerd containerd; do
        echo "-- $f.log, its last errors and warnings"
        grep -E 'level=(error|warning|fatal|panic)' "$dir/$f.log" 2>/dev/null |
            grep -v 'does not support cgroup' | tail -n 8 | cut -c1-300 || true
    done
    return 0
}

# pycm_docker_teardown [DIR]: stop the engine and registry, remove DIR.
pycm_docker_teardown() {
    local dir=${1:-${PYCM_DOCKER_DIR:-}} pid i f
    [ -n "$dir" ] && [ -d "$dir" ] || return 0
    if [ -S "$dir/docker.sock" ]; then
        # Remove containers first so no shim outlives the engine; bounded,
        # for an engine that no longer answers must not hang the teardown
        # (what still runs is killed below).
        { timeout -k 5 10 docker -H "unix://$dir/docker.sock" ps -aq 2>/dev/null |
            xargs -r timeout -k 5 60 docker -H "unix://$dir/docker.sock" rm -f \
                >/dev/null 2>&1; } || true
    fi
    for f in "$dir/registry.pid" "$dir/dockerd.pid" "$dir/containerd.pid"; do
        [ -f "$f" ] || continue
        pid=$(cat "$f")
        kill "$pid" 2>/dev/null || continue
        for i in $(seq 1 100); do
            _pycm_alive "$pid" || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    done
    _pycm_kill_under "$dir"
    # vfs layers can hold read-only bits; exec-root may hold mounts.
    # A dockerd killed with SIGKILL leaves its network namespaces mounted.
    for f in "$dir"/exec/netns/*; do
        [ -e "$f" ] && { umount "$f" 2>/dev/null || umount -l "$f" 2>/dev/null || true; }
    done
    umount -R "$dir/exec" 2>/dev/null || true
    umount -R "$dir/data" 2>/dev/null || true
    rm -rf "$dir" 2>/dev/null || true
    unset PYCM_DOCKER_HOST PYCM_DOCKER_PIDFILE PYCM_DOCKERD_ARGS PYCM_TEST_IMAGE \
        PYCM_TEST_REGISTRY PYCM_DOCKER_DIR
    return 0
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -u
    case "${1:-}" in
    setup)
        pycm_docker_setup >&2 || exit 1
        for v in PYCM_DOCKER_DIR PYCM_DOCKER_HOST PYCM_DOCKER_PIDFILE \
            PYCM_DOCKERD_ARGS PYCM_TEST_IMAGE PYCM_TEST_REGISTRY PYCM_REQUIRE_DOCKER; do
            printf 'export %s=%q\n' "$v" "${!v}"
        done
        ;;
    teardown) pycm_docker_teardown "${2:-${PYCM_DOCKER_DIR:-}}" ;;
    *)
        echo "usage: $0 setup|teardown [DIR]" >&2
        exit 2
        ;;
    esac
fi
