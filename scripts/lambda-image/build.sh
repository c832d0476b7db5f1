#!/usr/bin/env bash
# Build a local stand-in for the Lambda Python 3.13 base image
# (public.ecr.aws/lambda/python:3.13) for hosts that cannot reach a container
# registry, so that `sam local invoke --invoke-image` still works:
#
#   1. make sure a Docker daemon runs (start dockerd if needed);
#   2. debootstrap Debian trixie, whose python3 is CPython 3.13;
#   3. add awslambdaric and boto3 (the real runtime ships both) from PyPI wheels;
#   4. add /var/runtime/bootstrap, which the Runtime Interface Emulator that
#      sam local mounts at /var/rapid starts for every function;
#   5. `docker import` the tree as $IMAGE.
#
# Idempotent: an image built from this same script is kept unless --force.
# The root filesystem tarball is cached, so a forced rebuild only re-imports.
# Needs root (debootstrap, dockerd), debootstrap, docker, python3 with pip.

set -euo pipefail

IMAGE="${PICTRACE_LAMBDA_IMAGE:-pictrace/lambda-python3.13:local}"
CACHE_DIR="${PICTRACE_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pictrace/lambda-image}"
# Debian 13 "trixie" ships CPython 3.13, the Lambda runtime's version.
SUITE=trixie
# What the python3.13 Lambda runtime provides besides the standard library.
RUNTIME_PACKAGES=(awslambdaric==4.2.2 boto3==1.43.108)
WHEEL_PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64
                 manylinux_2_5_x86_64 manylinux1_x86_64)
FORCE=0
CLEAN=0
MIRROR="${DEBIAN_MIRROR:-}"

usage() {
    cat <<EOF
Usage: $0 [--force] [--clean] [--tag IMAGE] [--cache-dir DIR] [--mirror URL]

  --force       re-import the image even if it is up to date
  --clean       also discard the cached root filesystem (implies --force)
  --tag         image name (default: $IMAGE)
  --cache-dir   where the rootfs tarball and dockerd log go (default: $CACHE_DIR)
  --mirror      Debian mirror (default: the one apt uses on this host)
EOF
}

log() { printf '[lambda-image] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --force) FORCE=1 ;;
        --clean) CLEAN=1; FORCE=1 ;;
        --tag) IMAGE="${2:?--tag needs a value}"; shift ;;
        --cache-dir) CACHE_DIR="${2:?--cache-dir needs a value}"; shift ;;
        --mirror) MIRROR="${2:?--mirror needs a value}"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
    shift
done

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# The rootfs depends only on this script and the files it copies in.
KEY="$(cat "$0" "$HERE/bootstrap" "$HERE/lambda-entrypoint.sh" | sha256sum | cut -c1-16)"
ROOTFS_TAR="$CACHE_DIR/rootfs-$SUITE-$KEY.tar"
KEY_LABEL=org.pictrace.rootfs-key

ensure_docker() {
    if docker info >/dev/null 2>&1; then
        return 0
    fi
    command -v dockerd >/dev/null || die "no Docker daemon and no dockerd; install docker.io"
    log "starting dockerd (log: $CACHE_DIR/dockerd.log)"
    # --ip-masq=false: nothing run here needs to reach beyond this machine.
    # 9>&-: the daemon outlives this script and must not inherit its lock.
    setsid dockerd --ip-masq=false >"$CACHE_DIR/dockerd.log" 2>&1 </dev/null 9>&- &
    for _ in $(seq 1 90); do
        docker info >/dev/null 2>&1 && return 0
        sleep 1
    done
    die "dockerd did not come up; see $CACHE_DIR/dockerd.log"
}

# Print the Debian archive URL apt already uses on this host.
debian_mirror() {
    if [ -n "$MIRROR" ]; then
        echo "${MIRROR%/}"
        return
    fi
    local uri
    uri="$(
        {
            cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
                awk '/^[[:space:]]*URIs:/ { for (i = 2; i <= NF; i++) print $i }'
            cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
                awk '/^[[:space:]]*deb[[:space:]]/ {
                         for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }'
        } | grep -E '/debian/?$' | head -n 1
    )" || true
    [ -n "$uri" ] || die "no Debian mirror in /etc/apt sources; pass --mirror URL"
    echo "${uri%/}"
}

image_key() {
    docker image inspect -f "{{ index .Config.Labels \"$KEY_LABEL\" }}" "$IMAGE" 2>/dev/null || true
}

# Unmount anything debootstrap left mounted under $1 (deepest first).
unmount_under() {
    local root="$1" mnt
    awk -v r="$root" 'index($2, r "/") == 1 { print $2 }' /proc/mounts | sort -r |
        while read -r mnt; do umount -l "$mnt" || true; done
}

rie_binary() {
    python3 - <<'EOF'
import pathlib, samcli
print(pathlib.Path(samcli.__file__).parent / "local" / "rapid" / "aws-lambda-rie-x86_64")
EOF
}

build_rootfs() {
    local work rootfs mirror rie
    work="$(mktemp -d "$CACHE_DIR/work.XXXXXX")"
    rootfs="$work/rootfs"
    # Never follow a bind mount out of the tree when cleaning up.
    trap 'unmount_under "'"$rootfs"'"; rm -rf --one-file-system "'"$work"'"' EXIT
    mirror="$(debian_mirror)"

    log "debootstrap $SUITE from $mirror"
    debootstrap --variant=minbase --include=python3,ca-certificates \
        "$SUITE" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
        { tail -n 30 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
    unmount_under "$rootfs"

    log "installing ${RUNTIME_PACKAGES[*]} into /var/runtime"
    mkdir -p "$rootfs/var/runtime" "$rootfs/var/task" "$rootfs/opt"
    python3 -m pip install --quiet --disable-pip-version-check --no-compile \
        --no-warn-conflicts --root-user-action=ignore \
        --only-binary=:all: --implementation cp --python-version 3.13 \
        "${WHEEL_PLATFORMS[@]/#/--platform=}" \
        --target "$rootfs/var/runtime" "${RUNTIME_PACKAGES[@]}"
    rm -rf "$rootfs/var/runtime/bin"

    install -m 0755 "$HERE/bootstrap" "$rootfs/var/runtime/bootstrap"
    install -m 0755 "$HERE/lambda-entrypoint.sh" "$rootfs/lambda-entrypoint.sh"
    # The emulator inside the image only serves plain `docker run`; sam local
    # mounts its own copy at /var/rapid.
    rie="$(rie_binary 2>/dev/null)" || rie=""
    if [ -n "$rie" ] && [ -f "$rie" ]; then
        install -m 0755 "$rie" "$rootfs/usr/local/bin/aws-lambda-rie"
    else
        log "aws-lambda-rie not found in the SAM CLI; image works under sam local only"
    fi

    # Slim the tree: package caches and docs are not needed at run time.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*

    log "packing root filesystem"
    tar -C "$rootfs" --numeric-owner --one-file-system \
        --exclude='./proc/*' --exclude='./sys/*' --exclude='./dev/*' \
        -cf "$work/rootfs.tar" .
    mv "$work/rootfs.tar" "$ROOTFS_TAR"
    # Trees built by earlier versions of this script are dead weight now.
    find "$CACHE_DIR" -maxdepth 1 -name 'rootfs-*.tar' ! -name "${ROOTFS_TAR##*/}" -delete
    unmount_under "$rootfs"
    rm -rf --one-file-system "$work"
    trap - EXIT
}

import_image() {
    local previous
    previous="$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null)" || previous=""
    log "importing $ROOTFS_TAR as $IMAGE"
    docker import \
        --change "LABEL $KEY_LABEL=$KEY" \
        --change 'ENV LANG=C.UTF-8' \
        --change 'ENV TZ=:UTC' \
        --change 'ENV LAMBDA_TASK_ROOT=/var/task' \
        --change 'ENV LAMBDA_RUNTIME_DIR=/var/runtime' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/opt/bin' \
        --change 'ENV LD_LIBRARY_PATH=/opt/lib' \
        --change 'WORKDIR /var/task' \
        --change 'ENTRYPOINT ["/lambda-entrypoint.sh"]' \
        - "$IMAGE" <"$ROOTFS_TAR" >/dev/null
    # The replaced image is left untagged; drop it unless a container uses it.
    if [ -n "$previous" ] && [ "$previous" != "$(docker image inspect -f '{{.Id}}' "$IMAGE")" ]; then
        docker rmi "$previous" >/dev/null 2>&1 || true
    fi
}

main() {
    [ "$(id -u)" -eq 0 ] || die "run as root (debootstrap and dockerd need it)"
    command -v debootstrap >/dev/null || die "debootstrap is missing; install debootstrap"
    command -v docker >/dev/null || die "docker is missing; install docker.io"
    mkdir -p "$CACHE_DIR"
    exec 9>"$CACHE_DIR/lock"
    flock 9
    ensure_docker

    if [ "$FORCE" -eq 0 ] && [ "$(image_key)" = "$KEY" ]; then
        log "$IMAGE is up to date"
        return 0
    fi
    if [ "$CLEAN" -eq 1 ]; then
        rm -f "$CACHE_DIR"/rootfs-*.tar
    fi
    if [ ! -f "$ROOTFS_TAR" ]; then
        build_rootfs
    fi
    import_image
    log "built $IMAGE"
}

main
