# Shared by deploy/image/build, base, archive and test (sourced, not run): which container
# engine builds and runs the image, and the settings podman needs on these machines.
#
#   FHIRLAKE_ENGINE=docker|podman   force one (default: Docker when its daemon answers,
#                                   else podman, installed from Debian when missing)
#   FHIRLAKE_IMAGE                  the image's name (default fhirlake:dev)
#   FHIRLAKE_CACHE_DIR              where generated files live (default .cache/)
#
# Podman's images live where its storage.conf says (/var/lib/containers/storage for
# root); CONTAINERS_STORAGE_CONF names another one, e.g. a scratch store for a test.

ROOT="${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)}"
CACHE="${FHIRLAKE_CACHE_DIR:-$ROOT/.cache}"
IMAGE_CACHE="$CACHE/image"
IMAGE="${FHIRLAKE_IMAGE:-fhirlake:dev}"
GO_VERSION="${FHIRLAKE_GO_VERSION:-1.26}"
# The toolchain the locally made golang image holds (the Go module proxy serves it).
GO_TOOLCHAIN="${FHIRLAKE_GO_TOOLCHAIN:-go1.26.8}"
DEBIAN_RELEASE=bookworm

log() { printf '[image] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

as_root() {
  if [[ "$(id -u)" == 0 ]]; then "$@"; else sudo "$@"; fi
}

# apt_install PACKAGE...: Debian's packages, for what this machine lacks.
apt_install() {
  command -v apt-get >/dev/null || die "apt-get not found: install $* by hand"
  [[ "$(id -u)" == 0 ]] || command -v sudo >/dev/null || die "need root or sudo to apt-get install $*"
  log "installing Debian's $* (once)"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get -o DPkg::Lock::Timeout=600 update -qq
  as_root apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "$@" >/dev/null
}

# select_engine sets ENGINE and, for podman, CONTAINERS_CONF (unless the caller set one).
select_engine() {
  ENGINE="${FHIRLAKE_ENGINE:-}"
  if [[ -z "$ENGINE" ]]; then
    if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
      ENGINE=docker
    else
      ENGINE=podman
    fi
  fi
  case "$ENGINE" in
    docker) ;;
    podman)
      local missing=()
      command -v podman >/dev/null || missing+=(podman)
      command -v runc >/dev/null || missing+=(runc)
      command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
      ((${#missing[@]} == 0)) || apt_install "${missing[@]}"
      podman_conf
      ;;
    *) die "FHIRLAKE_ENGINE=$ENGINE: want docker or podman" ;;
  esac
}

# podman_conf writes the two settings podman needs where it runs as root inside a
# container of its own: runc, because crun refuses cgroups in hybrid (v1) mode, and
# default limits no higher than the hard ones this process has (podman's default of
# 1048576 open files fails with "setrlimit RLIMIT_NOFILE: Operation not permitted" without
# CAP_SYS_RESOURCE). A CONTAINERS_CONF set by the caller wins.
podman_conf() {
  [[ -n "${CONTAINERS_CONF:-}" ]] && return 0
  local conf="$IMAGE_CACHE/containers.conf" nofile nproc
  nofile="$(ulimit -Hn)" nproc="$(ulimit -Hu)"
  [[ "$nofile" == unlimited || "$nofile" -gt 1048576 ]] && nofile=1048576
  [[ "$nproc" == unlimited || "$nproc" -gt 32768 ]] && nproc=32768
  mkdir -p "$IMAGE_CACHE"
  {
    echo "# Written by deploy/image/lib.sh."
    echo "[containers]"
    echo "default_ulimits = [\"nofile=$nofile:$nofile\", \"nproc=$nproc:$nproc\"]"
    if [[ "$(stat -fc %T /sys/fs/cgroup)" != cgroup2fs ]] || ! command -v crun >/dev/null; then
      echo "[engine]"
      echo "runtime = \"runc\""
    fi
  } >"$conf.tmp"
  mv "$conf.tmp" "$conf"
  export CONTAINERS_CONF="$conf"
}

# engine ARGS...: the selected engine.
engine() { "$ENGINE" "$@"; }

has_image() { engine image inspect "$1" >/dev/null 2>&1; }

# build_ca prints the CA bundle this host trusts, which builds mount as a secret so that
# HTTPS from a build step (pip, the Go module proxy) passes a proxy only the host trusts.
# It is never part of an image.
build_ca() {
  local f
  for f in "${FHIRLAKE_BUILD_CA:-}" "${SSL_CERT_FILE:-}" /etc/ssl/certs/ca-certificates.crt; do
    if [[ -n "$f" && -s "$f" ]]; then
      printf '%s\n' "$f"
      return 0
    fi
  done
}

# source_date_epoch: the commit's time, so that two builds of one commit agree.
source_date_epoch() {
  git -C "$ROOT" log -1 --format=%ct 2>/dev/null || echo 0
}
