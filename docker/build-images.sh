#!/usr/bin/env bash
# Builds the images of docker-compose.yml — distillrec-training, distillrec-service and
# distillrec-lb (the HAProxy load balancer of the `lb` profile) — also where no registry and no
# PyTorch wheel index can be reached.  `make images` runs it.
#
#   docker/build-images.sh [--wheelhouse DIR] [--ca-bundle FILE] [IMAGE ...]   # IMAGE: training service lb (default: all)
#
# Base image (PYTHON_IMAGE, default python:3.11-slim-bookworm): used when present, else pulled, else
#   a stand-in with the same name is built once from Debian packages (docker/base-image.sh) and reused.
# torch (training image only), the first of:
#   TORCH_INDEX_URL          a PEP 503 index holding torch==$TORCH_VERSION and its dependencies;
#   --wheelhouse DIR         a folder of wheels (air-gapped machines; fill it where the index answers:
#                            pip download torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu -d DIR),
#                            served for the build as an index on 127.0.0.1;
#   https://download.pytorch.org/whl/cpu when it answers within 10 s;
#   else a wheelhouse filled by this machine's pip (`pip download torch==$TORCH_VERSION`, cached in
#   WHEELHOUSE_CACHE), accepted only when it resolves to a CPU build (+cpu).
# --ca-bundle FILE (or DISTILLREC_CA_BUNDLE): extra certificate authorities (PEM) the images trust
#   while building and the training image at run time — for networks that intercept TLS. Default:
#   the bundle this machine's pip is configured with (PIP_CERT or pip's `cert` setting), if any.
# DISTILLREC_IMAGE_TAG (default local) tags all images. Builds use the classic builder
# (DOCKER_BUILDKIT=0, nothing to pull) with --network host, so that a 127.0.0.1 index is reachable.
set -euo pipefail
cd "$(dirname "$0")/.."
. docker/lib.sh

python_image=${PYTHON_IMAGE:-python:3.11-slim-bookworm}
torch_version=${TORCH_VERSION:-2.13.0}
tag=${DISTILLREC_IMAGE_TAG:-local}
cpu_index=https://download.pytorch.org/whl/cpu
wheelhouse=${TORCH_WHEELHOUSE:-}
ca_bundle=${DISTILLREC_CA_BUNDLE:-}
images=()
while (($#)); do
    case $1 in
        --wheelhouse) wheelhouse=${2:?--wheelhouse needs a folder}; shift 2 ;;
        --ca-bundle) ca_bundle=${2:?--ca-bundle needs a PEM file}; shift 2 ;;
        training|service|lb) images+=("$1"); shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$1': expected --wheelhouse DIR, --ca-bundle FILE, or images among: training service lb" ;;
    esac
done
((${#images[@]})) || images=(training service lb)

# ---- extra certificate authorities ---------------------------------------------------------------
if [ -z "$ca_bundle" ]; then
    ca_bundle=${PIP_CERT:-$(python3 -m pip config get global.cert 2>/dev/null || true)}
fi
rm -f docker/certs/extra-ca.crt
cleanup() {
    rm -f docker/certs/extra-ca.crt
    if [ -n "${index_pid:-}" ]; then kill "$index_pid" 2>/dev/null || true; fi
    if [ -n "${index_root:-}" ]; then rm -rf "$index_root"; fi
}
trap cleanup EXIT
[ -z "$wheelhouse" ] || [ -d "$wheelhouse" ] || die "--wheelhouse $wheelhouse: no such folder; fill one with: pip download torch==$torch_version --index-url $cpu_index -d $wheelhouse"
if [ -n "$ca_bundle" ]; then
    [ -s "$ca_bundle" ] || die "--ca-bundle $ca_bundle: no such file (or empty); give a PEM file of certificate authorities"
    grep -q 'BEGIN CERTIFICATE' "$ca_bundle" || die "--ca-bundle $ca_bundle: holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
    cp "$ca_bundle" docker/certs/extra-ca.crt
    say "the images trust the extra certificate authorities in $ca_bundle"
fi

ensure_docker

# ---- the base image ------------------------------------------------------------------------------
if docker image inspect "$python_image" >/dev/null 2>&1; then
    say "base image $python_image: present$(docker image inspect -f '{{with index .Config.Labels "org.distillrec.stand-in"}} (stand-in: {{.}}){{end}}' "$python_image")"
elif timeout 120 docker pull -q "$python_image" >/dev/null 2>&1; then
    say "base image $python_image: pulled"
else
    say "base image $python_image cannot be pulled: building a stand-in from Debian packages"
    docker/base-image.sh "$python_image"
fi

# ---- where torch comes from (training image only) ------------------------------------------------
# A PEP 503 index over a folder of wheels: simple/<project>/index.html, served on 127.0.0.1.
serve_wheelhouse() {
    local dir=$1 project wheel port
    ls "$dir"/torch-"$torch_version"*.whl >/dev/null 2>&1 || die "wheelhouse $dir holds no torch-$torch_version wheel; fill it with: pip download torch==$torch_version --index-url $cpu_index -d $dir"
    index_root=$(mktemp -d /tmp/distillrec-index.XXXXXX)
    local root=$index_root
    for wheel in "$dir"/*.whl; do
        project=$(basename "$wheel" | cut -d- -f1 | tr 'A-Z_.' 'a-z--')
        mkdir -p "$root/simple/$project"
        ln -sf "$(cd "$(dirname "$wheel")" && pwd)/$(basename "$wheel")" "$root/simple/$project/"
        printf '<a href="%s">%s</a><br>\n' "$(basename "$wheel")" "$(basename "$wheel")" >>"$root/simple/$project/index.html"
    done
    # a fixed port keeps TORCH_INDEX_URL, and so Docker's layer cache of the torch install, unchanged
    # between builds; a random one when it is taken
    port=$(python3 -c 'import socket, sys
s = socket.socket()
try: s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError: s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])' "${WHEELHOUSE_PORT:-38917}")
    python3 -m http.server --bind 127.0.0.1 --directory "$root" "$port" >/dev/null 2>&1 &
    index_pid=$!
    for _ in $(seq 20); do python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/simple/torch/', timeout=1)" 2>/dev/null && break; sleep 0.5; done
    torch_index=http://127.0.0.1:$port/simple
    say "torch from the wheelhouse $dir, served as $torch_index"
}

torch_index=
if [[ " ${images[*]} " == *" training "* ]]; then
    if [ -n "${TORCH_INDEX_URL:-}" ]; then
        torch_index=$TORCH_INDEX_URL
        say "torch from TORCH_INDEX_URL=$torch_index"
    elif [ -n "$wheelhouse" ]; then
        serve_wheelhouse "$wheelhouse"
    elif python3 -c "import urllib.request; urllib.request.urlopen('$cpu_index/torch/', timeout=10)" 2>/dev/null; then
        torch_index=$cpu_index
        say "torch from PyTorch's CPU index $cpu_index"
    else
        wheelhouse=${WHEELHOUSE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/distillrec/wheelhouse}
        say "$cpu_index does not answer: filling $wheelhouse with this machine's pip (pip download torch==$torch_version)"
        mkdir -p "$wheelhouse"
        python3 -m pip download --quiet --disable-pip-version-check --only-binary=:all: --python-version 3.11 \
            "torch==$torch_version" -d "$wheelhouse" >"$wheelhouse.log" 2>&1 \
            || { tail -n 5 "$wheelhouse.log" >&2; die "pip download torch==$torch_version failed; give --wheelhouse DIR or TORCH_INDEX_URL (see --help)"; }
        ls "$wheelhouse"/torch-"$torch_version"+cpu-*.whl >/dev/null 2>&1 \
            || die "this machine's pip resolved torch==$torch_version to $(ls "$wheelhouse"/torch-* | head -n1), not a CPU build (+cpu, no CUDA libraries); give --wheelhouse DIR or TORCH_INDEX_URL (see --help)"
        serve_wheelhouse "$wheelhouse"
    fi
fi

# ---- build ---------------------------------------------------------------------------------------
build() {  # $1 = image name, $2 = Dockerfile, rest = extra build arguments
    local name=$1 file=$2 start=$SECONDS
    shift 2
    say "building $name:$tag ($file)"
    DOCKER_BUILDKIT=0 docker build --network host --label org.distillrec.image="$name" \
        --build-arg PYTHON_IMAGE="$python_image" "$@" -f "$file" -t "$name:$tag" . \
        | grep -E --line-buffered '^(Step [0-9]+/|Successfully (built|tagged)|ERROR|error)' >&2 \
        || die "building $name from $file failed (run: DOCKER_BUILDKIT=0 docker build --network host -f $file . to see every line)"
    say "built $name:$tag in $((SECONDS - start)) s, $(docker image inspect -f '{{.Size}}' "$name:$tag" | awk '{printf "%.0f MB", $1/1e6}')"
}
for image in "${images[@]}"; do
    case $image in
        training) build distillrec-training docker/training.Dockerfile --build-arg TORCH_VERSION="$torch_version" --build-arg TORCH_INDEX_URL="$torch_index" ;;
        service) build distillrec-service docker/service.Dockerfile ;;
        lb) build distillrec-lb docker/lb.Dockerfile ;;
    esac
done
# build stages and images replaced by this build are left untagged: drop them (only ours, by label)
docker image prune -f --filter label=org.distillrec.image >/dev/null
