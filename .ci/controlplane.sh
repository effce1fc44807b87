#!/usr/bin/env bash
# Build the test control plane from Go modules, once per pinned version, into a cache outside
# the repository:
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl  (k8s.io/kubernetes)
#   etcd                                                               (go.etcd.io/etcd/server/v3)
#   kwok, kwokctl                                                      (sigs.k8s.io/kwok)
#   kueue                                                              (sigs.k8s.io/kueue)
#   jobset                                                             (sigs.k8s.io/jobset)
# Extra controllers (Kueue, JobSet) are one `build_controller` line plus one
# `share_manifests` line each (binary, then its CRDs and webhook configurations).
#
# Usage: bash .ci/controlplane.sh [build|bin-dir|share-dir|versions]
#   build     build whatever is missing (default); prints the bin folder on stdout
#   bin-dir   print the bin folder (built or not)
#   share-dir print the folder of the controllers' CRDs and webhook manifests
#   versions  print the pinned versions as KEY=VALUE lines
# Environment: MUTASK_CACHE_DIR (default ~/.cache/mutask); Go's own module and build caches
# (GOMODCACHE, GOCACHE) stay where `go env` puts them, outside the repository.
#
# k8s.io/kubernetes cannot be `go install`ed: its go.mod replaces ~30 staging modules
# (k8s.io/api, client-go, ...) with ./staging folders. So a throwaway wrapper module requires
# it and replaces each staging module with its published v0.MINOR.PATCH, read from that
# release's own go.mod; -ldflags set the version so /version answers the real release.
set -euo pipefail

KUBE_VERSION="${MUTASK_KUBE_VERSION:-v1.36.3}"
ETCD_VERSION="${MUTASK_ETCD_VERSION:-v3.6.16}"
KWOK_VERSION="${MUTASK_KWOK_VERSION:-v0.8.0}"
KUEUE_VERSION="${MUTASK_KUEUE_VERSION:-v0.17.0}"
JOBSET_VERSION="${MUTASK_JOBSET_VERSION:-v0.11.0}"

CACHE="${MUTASK_CACHE_DIR:-$HOME/.cache/mutask}/controlplane"
BIN="$CACHE/k8s-$KUBE_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION-kueue-$KUEUE_VERSION-jobset-$JOBSET_VERSION/bin"

log() { printf 'controlplane: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

have() { local b; for b in "$@"; do [[ -x "$BIN/$b" ]] || return 1; done; }

# A fresh wrapper module in $1 with go.mod "module mutask.local/$2".
new_module() {
  rm -rf "$1" && mkdir -p "$1"
  printf 'module mutask.local/%s\n\ngo 1.26\n' "$2" >"$1/go.mod"
}

go_build() {  # go_build MODULE_DIR LDFLAGS PACKAGE...   (binaries land in $BIN)
  local dir="$1" ldflags="$2"
  shift 2
  (cd "$dir" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $ldflags" \
    -o "$BIN/" "$@")
}

build_kubernetes() {
  have kube-apiserver kube-controller-manager kube-scheduler kubectl && return
  command -v go >/dev/null || die "go is required to build Kubernetes $KUBE_VERSION"
  local dir="$CACHE/src/kubernetes-$KUBE_VERSION" minor patch staging
  new_module "$dir" kubernetes
  minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
  patch="${KUBE_VERSION##*.}"
  (cd "$dir" && go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" >mod.json)
  local kmod
  kmod="$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p' "$dir/mod.json")"
  [[ -f "$kmod" ]] || die "no go.mod for k8s.io/kubernetes@$KUBE_VERSION"
  staging="$(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$kmod")"
  [[ -n "$staging" ]] || die "no staging replaces in k8s.io/kubernetes@$KUBE_VERSION's go.mod"
  {
    grep '^godebug' "$kmod" || true
    printf 'require k8s.io/kubernetes %s\n' "$KUBE_VERSION"
    local m
    for m in $staging; do printf 'replace %s => %s v0.%s.%s\n' "$m" "$m" "$minor" "$patch"; done
  } >>"$dir/go.mod"
  log "building Kubernetes $KUBE_VERSION ($(wc -w <<<"$staging") staging modules at v0.$minor.$patch)"
  local ld="" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  go_build "$dir" "$ld" k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubectl
}

build_etcd() {
  have etcd && return
  local dir="$CACHE/src/etcd-$ETCD_VERSION"
  new_module "$dir" etcd
  # etcd's own main package lives in its root module, which is not published on its own;
  # etcdmain.Main is the whole of it.
  printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' \
    >"$dir/main.go"
  printf 'require go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" >>"$dir/go.mod"
  log "building etcd $ETCD_VERSION"
  (cd "$dir" && go mod tidy >/dev/null 2>&1 || go mod tidy)
  (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" .)
}

# build_controller NAME MODULE VERSION PACKAGE [LDFLAGS]: a controller published as a Go module
# (kwok, Kueue, JobSet, ...), built through a wrapper module so its go.sum is resolved here.
build_controller() {
  local name="$1" module="$2" version="$3" pkg="$4" ldflags="${5:-}"
  have "$(basename "$pkg")" && return
  local dir="$CACHE/src/$name-$version"
  new_module "$dir" "$name"
  printf 'require %s %s\n' "$module" "$version" >>"$dir/go.mod"
  log "building $pkg $version"
  go_build "$dir" "$ldflags" "$pkg"
}

# share_manifests NAME MODULE VERSION: keep a copy of a kubebuilder-style controller's CRDs and
# webhook configurations (config/components/{crd,webhook}, with the webhook kustomization's
# JSON patches when it has some, e.g. JobSet's pod webhooks' objectSelector) next to the
# binaries, for the tests that install and run it (tests/cluster/controllers.py).
share_manifests() {
  local name="$1" module="$2" version="$3" share="$BIN/../share/$1" dir
  [[ -f "$share/webhook/manifests.yaml" ]] && return
  dir="$(cd "$CACHE" && go mod download -json "$module@$version" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [[ -d "$dir/config/components/crd/bases" ]] || die "no config/components in $module@$version"
  rm -rf "$share.tmp" && mkdir -p "$share.tmp/crd" "$share.tmp/webhook"
  cp "$dir"/config/components/crd/bases/*.yaml "$share.tmp/crd/"
  cp "$dir/config/components/crd/kustomization.yaml" "$share.tmp/crd/kustomization.yaml"
  cp "$dir/config/components/webhook/manifests.yaml" "$share.tmp/webhook/manifests.yaml"
  if [[ -d "$dir/config/components/webhook/patches" ]]; then
    mkdir -p "$share.tmp/webhook/patches"
    cp "$dir"/config/components/webhook/patches/*.yaml "$share.tmp/webhook/patches/"
    cp "$dir/config/components/webhook/kustomization.yaml" "$share.tmp/webhook/"
  fi
  chmod -R u+w "$share.tmp" && rm -rf "$share" && mv "$share.tmp" "$share"
}

build_all() {
  mkdir -p "$BIN"
  build_etcd
  build_controller kwok sigs.k8s.io/kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok
  build_controller kwok sigs.k8s.io/kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwokctl
  build_kubernetes
  build_controller kueue sigs.k8s.io/kueue "$KUEUE_VERSION" sigs.k8s.io/kueue/cmd/kueue
  share_manifests kueue sigs.k8s.io/kueue "$KUEUE_VERSION"
  # JobSet's main package is the module root (the binary is named "jobset"); the proxy serves
  # it by exact version. Its version package gets the tag, as its release images do.
  build_controller jobset sigs.k8s.io/jobset "$JOBSET_VERSION" sigs.k8s.io/jobset \
    "-X sigs.k8s.io/jobset/pkg/version.GitVersion=$JOBSET_VERSION"
  share_manifests jobset sigs.k8s.io/jobset "$JOBSET_VERSION"
  have etcd kwok kwokctl kube-apiserver kube-controller-manager kube-scheduler kubectl kueue \
    jobset \
    || die "some binaries are missing from $BIN"
  "$BIN/kube-apiserver" --version >&2
  echo "$BIN"
}

case "${1:-build}" in
  build) build_all ;;
  bin-dir) echo "$BIN" ;;
  share-dir) echo "$(dirname "$BIN")/share" ;;
  versions)
    printf 'KUBE_VERSION=%s\nETCD_VERSION=%s\nKWOK_VERSION=%s\nKUEUE_VERSION=%s\nJOBSET_VERSION=%s\n' \
      "$KUBE_VERSION" "$ETCD_VERSION" "$KWOK_VERSION" "$KUEUE_VERSION" "$JOBSET_VERSION"
    ;;
  *) die "unknown command: $1 (build | bin-dir | share-dir | versions)" ;;
esac
