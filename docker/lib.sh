# Shared by docker/build-images.sh and docker/test-deploy.sh (sourced, not run).
# say, die, ensure_docker (starts dockerd when no engine answers), compose (either spelling),
# debian_mirror (the mirror apt uses).

say() { printf '[%s %s] %s\n' "${0##*/}" "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { say "error: $*"; exit 1; }

# A Docker engine that answers, else dockerd started in the background (needs root; its log goes to
# DOCKERD_LOG). Nothing is started when `docker info` already works.
ensure_docker() {
    command -v docker >/dev/null || die "no docker client on PATH: install Docker (Debian: apt-get install docker.io)"
    docker info >/dev/null 2>&1 && return 0
    command -v dockerd >/dev/null || die "no Docker engine answers and dockerd is not installed (Debian: apt-get install docker.io)"
    [ "$(id -u)" = 0 ] || die "no Docker engine answers; start it (sudo systemctl start docker) or run this as root so it can start dockerd"
    local log=${DOCKERD_LOG:-/tmp/distillrec-dockerd.log}
    say "no Docker engine answers: starting dockerd --storage-driver ${DOCKERD_STORAGE_DRIVER:-overlay2} (log: $log)"
    nohup dockerd --storage-driver "${DOCKERD_STORAGE_DRIVER:-overlay2}" >"$log" 2>&1 &
    local i
    for i in $(seq 60); do docker info >/dev/null 2>&1 && return 0; sleep 1; done
    die "dockerd did not answer within 60 s; see $log"
}

# `docker compose` (v2 plugin) when present, else Debian's `docker-compose` (v1.29); same arguments.
compose() {
    if docker compose version >/dev/null 2>&1; then docker compose "$@"
    elif command -v docker-compose >/dev/null; then docker-compose "$@"
    else die "neither 'docker compose' nor 'docker-compose' is installed (Debian: apt-get install docker-compose)"
    fi
}

# The first non-security Debian mirror in the given apt source files (one-line `deb URL ...` or
# deb822 `URIs: URL`); files that do not exist are skipped. Prints nothing when there is none.
debian_mirror() {
    local f
    for f in "$@"; do [ -f "$f" ] && cat "$f"; done \
        | sed -nE 's/^deb +(\[[^]]*\] +)?(https?:[^ ]+).*/\2/p; s/^URIs: *(https?:[^ ]+).*/\1/p' \
        | grep -v security | head -n1 || true
}
