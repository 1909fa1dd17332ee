#!/usr/bin/env bash
# The Compose job: the project's compose files run for real on a private Docker engine.
#
#   ci/compose-smoke.sh            (as root on Debian 12; ./test.sh runs it after pytest)
#   COMPOSE_SMOKE=skip ./test.sh   (a machine that cannot run an engine; CI never sets it)
#
# From nothing, it installs debootstrap, containerd and runc from Debian, takes Debian's docker.io
# (Engine 26), docker-cli and docker-compose (Compose v2, a single binary used as a CLI plugin)
# from the next release, trixie, fetched with apt from the mirror the machine already uses, and
# starts its own dockerd: own data root, exec root and socket under a temp dir, no iptables rules,
# no IP forwarding, no default bridge, so containers reach only each other. It builds the base
# image the Dockerfile names from Debian packages (debootstrap; no image registry is reachable,
# so nothing is ever pulled), builds the project image (pip reaches the package index through
# `--network host`), then:
#   1. the root stack (docker-compose.yml + ci/docker-compose.offline.yml): all eleven services
#      healthy, then the `test-pipeline` service (every accepted record in S3 exactly once);
#   2. the Stage 00 stack (00-mock-servers/) and the Stage 01 stack (01-ingestion/, joined to
#      Stage 00's network): every service healthy.
# Each stack has its own project name and publishes no port, so nothing meets a fleet on the host.
# On exit (even a failed one) it stops its engine by pid, unmounts what it mounted and deletes
# its temp dir. The debootstrap tarball and the unpacked trixie packages are cached in
# COMPOSE_SMOKE_CACHE (default ~/.cache/stages-compose-smoke) for the next run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { echo "==> compose-smoke: $*"; }
die() {
    echo "error: compose-smoke: $*" >&2
    exit 1
}

if [[ "${COMPOSE_SMOKE:-}" == skip ]]; then
    say "skipped (COMPOSE_SMOKE=skip)"
    exit 0
fi

START=$SECONDS
CACHE=${COMPOSE_SMOKE_CACHE:-${HOME:-/root}/.cache/stages-compose-smoke}
# The tag the Dockerfile's FROM names: the base image is imported under it.
BASE_TAG=$(awk '$1 == "FROM" { print $2; exit }' Dockerfile)
SUITE=bookworm
PIPELINE_ARGS=${COMPOSE_SMOKE_PIPELINE_ARGS:-}
WAIT_TIMEOUT=${COMPOSE_SMOKE_WAIT_TIMEOUT:-300}
# ps output is "healthy" per service; these are the counts each stack must reach.
ROOT_SERVICES=11
STAGE00_SERVICES=7
STAGE01_SERVICES=1

# --- what the machine needs ------------------------------------------------------------------
if [[ $(id -u) -ne 0 ]]; then
    die "needs root (to install packages and run its own dockerd); COMPOSE_SMOKE=skip skips it"
fi
command -v apt-get >/dev/null || die "needs a Debian machine (apt-get); COMPOSE_SMOKE=skip skips it"

# The Debian mirror this machine already uses (no other network is assumed).
mirror() {
    local uri
    uri=$(grep -hE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list \
        2>/dev/null | grep -v security | grep -oE 'https?://[^ ]+' | head -1)
    echo "${uri:-http://deb.debian.org/debian}"
}
MIRROR=$(mirror)

apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "$@" >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "$@" >/dev/null; }
}

# Debian's own packages for what runs under the engine.
missing=()
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v containerd >/dev/null || missing+=(containerd)
command -v runc >/dev/null || missing+=(runc)
command -v tini-static >/dev/null || missing+=(tini)
command -v iptables >/dev/null || missing+=(iptables)
if ((${#missing[@]})); then
    say "installing ${missing[*]} (apt-get)"
    apt_install "${missing[@]}" || die "could not install ${missing[*]}"
fi

# The engine, its client and Compose v2 come from Debian's next release (trixie): the compose
# files need Engine >= 25 (healthcheck start_interval) and Compose v2, and bookworm has Engine
# 20.10 and Compose v1. Their .debs are fetched with apt, from the mirror this machine already
# uses, through a private apt state (the machine's own sources stay as they are), and unpacked
# under the cache; they need nothing newer than bookworm's libc.
TRIXIE=$CACHE/trixie
TRIXIE_PACKAGES=(docker.io docker-cli docker-compose)
if [[ ! -x $TRIXIE/usr/sbin/dockerd || ! -x $TRIXIE/usr/bin/docker \
    || ! -x $TRIXIE/usr/libexec/docker/cli-plugins/docker-compose ]]; then
    say "fetching ${TRIXIE_PACKAGES[*]} from Debian trixie ($MIRROR)"
    apt_dir=$(mktemp -d /tmp/stages-compose-apt.XXXXXX)
    mkdir -p "$apt_dir/etc" "$apt_dir/lists/partial" "$apt_dir/archives/partial"
    cat >"$apt_dir/etc/trixie.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    apt_opts=(
        -o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$apt_dir/etc"
        -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache::Archives=$apt_dir/archives"
        -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache=" -o "APT::Sandbox::User=root"
    )
    apt-get "${apt_opts[@]}" update -q >/dev/null || die "apt-get update of trixie failed"
    (cd "$apt_dir" && apt-get "${apt_opts[@]}" download "${TRIXIE_PACKAGES[@]}" >/dev/null) \
        || die "apt-get download ${TRIXIE_PACKAGES[*]} (trixie) failed"
    rm -rf "$TRIXIE.tmp"
    mkdir -p "$TRIXIE.tmp"
    for deb in "$apt_dir"/*.deb; do
        dpkg-deb -x "$deb" "$TRIXIE.tmp"
    done
    rm -rf "$TRIXIE" "$apt_dir"
    mv "$TRIXIE.tmp" "$TRIXIE"
fi
DOCKERD=$TRIXIE/usr/sbin/dockerd
DOCKER_BIN=$TRIXIE/usr/bin/docker
PLUGIN=$TRIXIE/usr/libexec/docker/cli-plugins/docker-compose
# dockerd finds docker-proxy and docker-init beside it; containerd and runc are bookworm's.
export PATH=$TRIXIE/usr/sbin:$TRIXIE/usr/bin:$PATH

# --- a private engine ------------------------------------------------------------------------
WORK=$(mktemp -d /tmp/stages-compose.XXXXXX)
SOCK=$WORK/docker.sock
PIDFILE=$WORK/dockerd.pid
export DOCKER_HOST=unix://$SOCK
# Compose finds its plugin through the client's config dir; nothing of the user's is read.
export DOCKER_CONFIG=$WORK/config
mkdir -p "$DOCKER_CONFIG/cli-plugins"
ln -s "$PLUGIN" "$DOCKER_CONFIG/cli-plugins/docker-compose"
DOCKERD_PID=
PROJECTS=()

docker_() { "$DOCKER_BIN" "$@"; }

cleanup() {
    local rc=$?
    set +e
    if [[ -n $DOCKERD_PID ]] && kill -0 "$DOCKERD_PID" 2>/dev/null; then
        for project in "${PROJECTS[@]}"; do
            docker_ compose -p "$project" down -v --remove-orphans -t 5 >/dev/null 2>&1
        done
        kill -TERM "$DOCKERD_PID"
        for _ in $(seq 60); do
            kill -0 "$DOCKERD_PID" 2>/dev/null || break
            sleep 0.5
        done
        kill -0 "$DOCKERD_PID" 2>/dev/null && kill -KILL "$DOCKERD_PID"
        wait "$DOCKERD_PID" 2>/dev/null
    fi
    # Whatever the engine left mounted under the temp dir (overlays, netns, shm), deepest first.
    awk -v w="$WORK" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r \
        | while read -r mnt; do umount -l "$mnt"; done
    rm -rf "$WORK"
    say "finished in $((SECONDS - START)) s (exit $rc)"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "starting dockerd ($("$DOCKERD" --version)) under $WORK"
"$DOCKERD" \
    --data-root "$WORK/data" --exec-root "$WORK/exec" --pidfile "$PIDFILE" \
    --host "$DOCKER_HOST" --iptables=false --ip-forward=false --ip-masq=false --bridge=none \
    --userland-proxy=false >"$WORK/dockerd.log" 2>&1 &
DOCKERD_PID=$!
for _ in $(seq 120); do
    docker_ version >/dev/null 2>&1 && break
    if ! kill -0 "$DOCKERD_PID" 2>/dev/null; then
        tail -30 "$WORK/dockerd.log" >&2
        die "this machine cannot run a Docker engine (dockerd exited; log above); COMPOSE_SMOKE=skip skips the job"
    fi
    sleep 0.5
done
docker_ version >/dev/null 2>&1 || {
    tail -30 "$WORK/dockerd.log" >&2
    die "dockerd did not answer within 60 s"
}
say "engine $(docker_ version -f '{{.Server.Version}}'), compose $(docker_ compose version --short)"

# --- images ----------------------------------------------------------------------------------
# The base image: Debian's python3 (3.11) with venv and pip, in a venv on PATH so `python` and
# `pip install` behave as in the official python image. The host's extra CA certificates go in
# so pip inside `docker build --network host` trusts the same proxies the host does.
TARBALL=$CACHE/debootstrap-$SUITE-python3.tar
if [[ ! -s $TARBALL ]]; then
    say "debootstrap $SUITE with python3 from $MIRROR (cached as $TARBALL)"
    rootfs=$WORK/rootfs
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
        "$SUITE" "$rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
        || { tail -30 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
    mkdir -p "$CACHE"
    tar -C "$rootfs" --numeric-owner -cf "$TARBALL.tmp" . && mv "$TARBALL.tmp" "$TARBALL"
    rm -rf "$rootfs"
fi
rootfs=$WORK/base
mkdir -p "$rootfs"
tar -C "$rootfs" --numeric-owner -xf "$TARBALL"
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
    chroot "$rootfs" update-ca-certificates >/dev/null 2>&1 || die "update-ca-certificates failed"
fi
chroot "$rootfs" python3 -m venv /opt/python >/dev/null || die "python3 -m venv failed"
rm -rf "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/lib/apt/lists/"*
say "importing the base image as $BASE_TAG"
tar -C "$rootfs" --numeric-owner -c . | docker_ import \
    --change 'ENV PATH=/opt/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' - "$BASE_TAG" >/dev/null
rm -rf "$rootfs"

say "building stages:local (--pull=false, --network host for pip)"
build_start=$SECONDS
docker_ build --pull=false --network host -t stages:local . >"$WORK/build.log" 2>&1 \
    || { tail -40 "$WORK/build.log" >&2; die "docker build failed"; }
say "image built in $((SECONDS - build_start)) s; size $(docker_ image inspect -f '{{.Size}}' stages:local) bytes"

# --- stacks ----------------------------------------------------------------------------------
# Variables of the user's shell that the compose files interpolate must not change the test.
unset AWS_DEFAULT_REGION LOG_LEVEL CONTROL_TOKEN LEASE_TABLE FLUSH_MAX_AGE_SECONDS COMPRESSION \
    AWS_ENDPOINT_URL AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY DEPLOYMENT_ENVIRONMENT \
    LOGS_STREAM_SHARDS METRICS_STREAM_SHARDS APM_STREAM_SHARDS CONSUMER_STREAMS

compose() {
    local project=$1
    shift
    docker_ compose -p "$project" "$@"
}

# The last health-check results of every container that is not healthy.
show_health() {
    local project=$1
    docker_ ps -a --filter "label=com.docker.compose.project=$project" --format '{{.Names}}' \
        | while read -r name; do
            docker_ inspect -f '{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{range .State.Health.Log}}
    exit {{.ExitCode}}: {{printf "%.300s" .Output}}{{end}}{{end}}' "$name"
        done | grep -v ' healthy$' >&2 || true
}

# up -d --wait, then every service of the project must say healthy.
up_healthy() {
    local project=$1 expected=$2
    shift 2
    PROJECTS+=("$project")
    local t0=$SECONDS
    if ! compose "$project" "$@" up -d --no-build --wait --wait-timeout "$WAIT_TIMEOUT"; then
        compose "$project" "$@" ps -a >&2
        compose "$project" "$@" logs --tail 40 >&2
        show_health "$project"
        die "$project: not every service became healthy"
    fi
    local healthy
    healthy=$(compose "$project" "$@" ps --format '{{.Service}} {{.Health}}' | grep -c ' healthy$' || true)
    compose "$project" "$@" ps --format '  {{.Service}}: {{.Status}}'
    if [[ $healthy -ne $expected ]]; then
        show_health "$project"
        die "$project: $healthy of $expected services healthy"
    fi
    say "$project: $healthy of $expected services healthy after $((SECONDS - t0)) s"
}

down() {
    compose "$@" down -v --remove-orphans -t 30 >/dev/null
}

ROOT_FILES=(-f docker-compose.yml -f ci/docker-compose.offline.yml)
up_healthy stages-smoke "$ROOT_SERVICES" "${ROOT_FILES[@]}"
say "running the test-pipeline service"
# shellcheck disable=SC2086 # the arguments are words on purpose
compose stages-smoke "${ROOT_FILES[@]}" --profile test run --rm test-pipeline $PIPELINE_ARGS \
    || {
        compose stages-smoke "${ROOT_FILES[@]}" logs --tail 40 >&2
        die "test-pipeline failed"
    }
down stages-smoke "${ROOT_FILES[@]}"

STAGE00_FILES=(-f 00-mock-servers/docker-compose.yml -f ci/stage00.offline.yml)
STAGE01_FILES=(-f 01-ingestion/docker-compose.yml -f ci/stage01.offline.yml)
up_healthy stages-smoke-00 "$STAGE00_SERVICES" "${STAGE00_FILES[@]}"
up_healthy stages-smoke-01 "$STAGE01_SERVICES" "${STAGE01_FILES[@]}"
down stages-smoke-01 "${STAGE01_FILES[@]}"
down stages-smoke-00 "${STAGE00_FILES[@]}"

say "PASSED: root stack (9 healthy, test-pipeline), Stage 00 (7 healthy), Stage 01 (1 healthy)"
