#!/usr/bin/env bash
# Assembles the runtime image (scalelab:latest) from the locally built binary, pulling nothing.
#
#   scripts/docker-image.sh              # package target/release/scalelab (built if missing)
#   scripts/docker-image.sh path/to/bin  # package another binary under the same layout
#   SCALELAB_IMAGE=name:tag scripts/docker-image.sh
#   SCALELAB_ENGINE=podman scripts/docker-image.sh   # the same image into podman's store
#
# Why: no image registry is reachable where the tests run, so the Dockerfile's base images
# cannot be pulled. This script makes the smallest root filesystem that runs the binary and
# `docker import`s it. The layout is the Dockerfile's runtime stage: the binary at
# /usr/local/bin/scalelab, user `scalelab` (uid/gid 10001, home /home/scalelab, the working
# directory), ENTRYPOINT the binary, CMD --help, ports 8080 (traffic), 9090 (admin) and 8081
# (node) exposed.
#
# The engine is `docker` unless SCALELAB_ENGINE says `podman` (the Kubernetes checks run the
# image under `podman kube play`): the same root filesystem, byte for byte, and the same
# settings, imported with `podman import`, which takes the same --change instructions. Podman
# reads its storage and configuration from the caller's environment (CONTAINERS_CONF,
# CONTAINERS_STORAGE_CONF), so a test's private store receives it.
#
# What the root filesystem holds, and why:
#   - the binary and exactly the shared objects `ldd` lists, plus the dynamic loader, each at
#     the path the loader will look for it;
#   - /etc/passwd and /etc/group (root and scalelab), so USER and ownership resolve;
#   - /etc/nsswitch.conf with `hosts: files dns`: the balancer resolves compose service names
#     (`node`, `tasks.node`) through getaddrinfo, which asks Docker's embedded DNS server
#     (127.0.0.11, written by Docker into the bind-mounted /etc/resolv.conf). glibc >= 2.34
#     has the `files` and `dns` NSS services built into libc.so.6, so no libnss_*.so or
#     libresolv.so is needed; the script checks the glibc version and adds them if older.
#   - /etc/hosts (Docker bind-mounts its own over it), /tmp (1777), /home/scalelab.
# The tar is deterministic (sorted, fixed mtime, numeric owners), and its digest is kept as
# an image label: re-running with an unchanged binary skips the import.
set -euo pipefail
cd "$(dirname "$0")/.."

image=${SCALELAB_IMAGE:-scalelab:latest}
engine=${SCALELAB_ENGINE:-docker}
case $engine in
    docker | podman) ;;
    *)
        echo "docker-image.sh: SCALELAB_ENGINE must be docker or podman, not '$engine'" >&2
        exit 2
        ;;
esac
bin=${1:-target/release/scalelab}
uid=10001

log() { echo "docker-image.sh: $*" >&2; }

if [[ ! -x $bin ]]; then
    if [[ $# -gt 0 ]]; then
        log "no executable at $bin"
        exit 1
    fi
    log "building $bin"
    cargo build --release --locked --bin scalelab
fi

umask 022
rootfs=$(mktemp -d "${TMPDIR:-/tmp}/scalelab-rootfs.XXXXXX")
trap 'rm -rf "$rootfs"' EXIT
chmod 0755 "$rootfs"   # mktemp made it 0700; it becomes the image's /

# --- the binary and what it links -------------------------------------------------------
# Without its debug info (the release profile keeps line tables: 80 MB instead of 15 MB).
# vfs copies the whole image into every container it creates, so size is start-up time.
# Symbols stay, so a panic's backtrace still names functions. The Dockerfile does the same.
mkdir -p "$rootfs/usr/local/bin"
strip --strip-debug -o "$rootfs/usr/local/bin/scalelab" "$bin"
chmod 0755 "$rootfs/usr/local/bin/scalelab"

# ldd prints "name => /path (addr)" for libraries and "/path (addr)" for the loader; vdso
# has no path. A library that is "not found" would only fail at run time, so stop here.
if ldd_out=$(ldd "$bin" 2>&1); then
    if grep -q 'not found' <<<"$ldd_out"; then
        log "unresolved libraries:"$'\n'"$ldd_out"
        exit 1
    fi
    libs=$(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$ldd_out")
else
    libs=""   # statically linked: nothing to copy
fi

# glibc older than 2.34 keeps the files/dns NSS services (and the resolver) in separate
# objects that getaddrinfo dlopens, which ldd cannot see. Newer glibc (bookworm has 2.36)
# builds them into libc.so.6.
libc=$(grep -m1 '/libc\.so\.6$' <<<"$libs" || true)
if [[ -n $libc ]]; then
    glibc_minor=$(getconf GNU_LIBC_VERSION | awk '{ split($2, v, "."); print v[2] }')
    if ((glibc_minor < 34)); then
        dir=$(dirname "$libc")
        libs+=$'\n'"$(ls "$dir"/libnss_files.so.2 "$dir"/libnss_dns.so.2 "$dir"/libresolv.so.2)"
    fi
fi

for lib in $libs; do
    # Copy the file's content (-L) to the very path the loader uses; symlinked or
    # merged-/usr hosts then need no symlinks recreated inside the image.
    install -D -m 0755 "$(readlink -f "$lib")" "$rootfs$lib"
done

# --- users, name resolution, writable dirs ----------------------------------------------
mkdir -p "$rootfs"/{etc,tmp,proc,sys,dev,home/scalelab}
chmod 1777 "$rootfs/tmp"
cat >"$rootfs/etc/passwd" <<EOF
root:x:0:0:root:/root:/usr/sbin/nologin
scalelab:x:$uid:$uid:scalelab:/home/scalelab:/usr/sbin/nologin
EOF
cat >"$rootfs/etc/group" <<EOF
root:x:0:
scalelab:x:$uid:
EOF
cat >"$rootfs/etc/nsswitch.conf" <<'EOF'
passwd: files
group:  files
hosts:  files dns
EOF
cat >"$rootfs/etc/hosts" <<'EOF'
127.0.0.1 localhost
::1       localhost ip6-localhost ip6-loopback
EOF
: >"$rootfs/etc/resolv.conf"   # Docker bind-mounts the real one (127.0.0.11 on user networks)

# --- pack (deterministically) and import -------------------------------------------------
tarball=$rootfs.tar
trap 'rm -rf "$rootfs" "$tarball"' EXIT
tar_common=(--sort=name --mtime=@0 --numeric-owner)
# Everything root-owned but the home directory, which belongs to scalelab.
tar -C "$rootfs" -cf "$tarball" "${tar_common[@]}" --owner=0 --group=0 \
    --exclude=./home/scalelab .
tar -C "$rootfs" -rf "$tarball" "${tar_common[@]}" --owner=$uid --group=$uid ./home/scalelab
digest=$(sha256sum "$tarball" | cut -d' ' -f1)

label=org.scalelab.rootfs-sha256
current=$("$engine" image inspect --format "{{ index .Config.Labels \"$label\" }}" "$image" \
    2>/dev/null || true)
if [[ $current == "$digest" ]]; then
    log "$image is up to date (rootfs $digest)"
    exit 0
fi

previous=$("$engine" image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)

# The same settings as the Dockerfile's runtime stage (one port per EXPOSE: podman 4.3
# reads one).
quiet=()
[[ $engine == podman ]] && quiet=(--quiet)   # its copy progress; docker import prints none
"$engine" import "${quiet[@]}" \
    --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change "USER $uid:$uid" \
    --change "WORKDIR /home/scalelab" \
    --change "EXPOSE 8080" --change "EXPOSE 9090" --change "EXPOSE 8081" \
    --change 'ENTRYPOINT ["/usr/local/bin/scalelab"]' \
    --change 'CMD ["--help"]' \
    --change "LABEL $label=$digest" \
    --message "scalelab runtime assembled from $(basename "$bin")" \
    "$tarball" "$image" >/dev/null
# The image the tag pointed at before is now untagged: remove it unless a container uses it.
if [[ -n $previous ]]; then
    "$engine" image rm "$previous" >/dev/null 2>&1 || true
fi
log "imported $image into $engine ($(du -h "$tarball" | cut -f1) rootfs, $(wc -w <<<"$libs") shared objects)"
