#!/usr/bin/env bash
# Create a kind cluster, install the CRDs and RBAC, run the operator (on the host, against the
# cluster), apply a CPU TaskIntroduction on digits (1 generation, 2 candidates) and wait for
# Succeeded; then run the e2e pytest suite against it.
#
#   tests/e2e/kind.sh                 # needs: kind, kubectl, docker; a trainer image (below)
#   MUTASK_TRAINER_IMAGE=... KEEP_CLUSTER=1 tests/e2e/kind.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
CLUSTER=${CLUSTER:-mutask-e2e}
IMAGE=${MUTASK_TRAINER_IMAGE:-mutask-trainer:e2e-cpu}
KUBECONFIG_FILE=${KUBECONFIG_FILE:-$(mktemp -t mutask-kind-XXXX.yaml)}
export KUBECONFIG=$KUBECONFIG_FILE

for tool in kind kubectl docker; do
  command -v "$tool" >/dev/null || { echo "kind.sh needs $tool" >&2; exit 2; }
done

kind create cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG_FILE" --wait 120s
cleanup() {
  [[ -n "${OPERATOR_PID:-}" ]] && kill "$OPERATOR_PID" 2>/dev/null || true
  [[ -n "${KEEP_CLUSTER:-}" ]] || kind delete cluster --name "$CLUSTER"
}
trap cleanup EXIT

if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
  docker build -f trainer/Dockerfile --build-arg VARIANT=cpu -t "$IMAGE" .
fi
kind load docker-image "$IMAGE" --name "$CLUSTER"

kubectl apply -f manifests/crds/
kubectl wait --for=condition=Established crd/multitasksystems.mutask.dev crd/taskintroductions.mutask.dev --timeout=60s
kubectl create namespace mutask-system --dry-run=client -o yaml | kubectl apply -f -
kubectl create namespace mutask --dry-run=client -o yaml | kubectl apply -f -
kubectl apply -f manifests/operator/rbac.yaml
# The file:// store: a PersistentVolumeClaim that every trainer pod of "tiny" (bootstrap Job,
# then the introduction Jobs) mounts at /var/lib/mutask/tiny. kind's default StorageClass is
# local-path (ReadWriteOnce, WaitForFirstConsumer): fine here, since this is a single-node
# cluster and the Jobs run one at a time per task on that node (RWO allows pods of one node to
# share the volume). A multi-node cluster needs a ReadWriteMany class (see the sample's comment).
kubectl apply -f manifests/samples/store-pvc.yaml

# Run the operator on the host. Its file:// probe looks at its own filesystem, not the claim:
# this (empty) host directory makes it run the bootstrap Job, whose success marks the root ready.
mkdir -p /var/lib/mutask/tiny 2>/dev/null || sudo mkdir -p /var/lib/mutask/tiny
. .venv/bin/activate
( cd /tmp && MUTASK_TRAINER_IMAGE_CPU="$IMAGE" MUTASK_IMAGE_PULL_POLICY=Never \
    python -m mutask.operator --all-namespaces --standalone --metrics-port 0 --liveness-port 0 ) &
OPERATOR_PID=$!

kubectl apply -f manifests/samples/multitasksystem-bootstrap.yaml
kubectl apply -f manifests/samples/taskintroduction-cpu.yaml
for _ in $(seq 1 180); do
  phase=$(kubectl -n mutask get ti digits-cpu -o jsonpath='{.status.phase}' 2>/dev/null || true)
  echo "digits-cpu: ${phase:-<none>}"
  [[ "$phase" == Succeeded ]] && break
  [[ "$phase" == Failed ]] && { kubectl -n mutask describe ti digits-cpu; exit 1; }
  sleep 5
done
[[ "$phase" == Succeeded ]] || { echo "timed out"; exit 1; }
kubectl -n mutask get ti,mts -o wide

MUTASK_E2E_KUBECONFIG=$KUBECONFIG_FILE pytest -q tests/e2e
