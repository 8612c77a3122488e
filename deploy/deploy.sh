#!/usr/bin/env bash
# Build the image and deploy `samemath-serve` to Cloud Run (private by default).
#
#   PROJECT=my-project REGION=europe-west1 deploy/deploy.sh
#   PUBLIC=1 deploy/deploy.sh          # allow unauthenticated calls (e.g. for the browser build)
#   CORS=https://example.org deploy/deploy.sh   # let pages from that origin call it ($SAMEMATH_CORS)
#   GPU=1 deploy/deploy.sh             # an NVIDIA L4 instance (see the note on GPUs in README)
#   deploy/deploy.sh --dry-run         # print the exact docker and gcloud commands, run nothing
#
# The same service, declaratively: deploy/service.yaml (service-gpu.yaml for GPU=1), for
#   gcloud run services replace deploy/service.yaml --region REGION
# after putting the image's name in it; a test keeps those files and these flags in sync.
#
# Needs gcloud (logged in) and docker. Prints the service URL; point the app at it:
#   samemath generate --remote "$URL" "Why is the sky blue?"
set -euo pipefail
cd "$(dirname "$0")/.."

DRY_RUN=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "deploy.sh: unknown argument $arg (only --dry-run)" >&2; exit 2 ;;
  esac
done

# Run a command, or print it exactly (shell-quoted) on a dry run.
run() {
  if [ "$DRY_RUN" = 1 ]; then
    printf '%q ' "$@" | sed 's/ $//'
    echo
  else
    "$@"
  fi
}

if [ "$DRY_RUN" = 1 ]; then
  PROJECT="${PROJECT:-PROJECT}"
else
  PROJECT="${PROJECT:-$(gcloud config get-value project 2>/dev/null)}"
fi
REGION="${REGION:-us-central1}"
SERVICE="${SERVICE:-samemath}"
REPO="${REPO:-samemath}"
TAG="$(git rev-parse --short HEAD 2>/dev/null || echo latest)"
IMAGE="$REGION-docker.pkg.dev/$PROJECT/$REPO/samemath:$TAG"
[ -n "$PROJECT" ] || { echo "set PROJECT (or gcloud config set project ...)" >&2; exit 2; }

if [ "$DRY_RUN" = 1 ] || ! gcloud artifacts repositories describe "$REPO" --location "$REGION" \
     --project "$PROJECT" >/dev/null 2>&1; then
  run gcloud artifacts repositories create "$REPO" --repository-format docker \
    --location "$REGION" --project "$PROJECT"
fi
run gcloud auth configure-docker "$REGION-docker.pkg.dev" --quiet
# Cloud Run runs linux/amd64 images: say so, or a Mac with Apple silicon builds one for arm64.
run docker build --platform linux/amd64 -f deploy/Dockerfile --build-arg "GPU=${GPU:-0}" -t "$IMAGE" .
run docker push "$IMAGE"

flags=(
  --image "$IMAGE" --region "$REGION" --project "$PROJECT"
  --port 8080
  # The image's server generates 2 answers at once (and queues 8 more); Cloud Run sends an
  # instance at most 2 and starts another instance for the rest: scale-out, not queueing.
  --concurrency 2
  --max-instances "${MAX_INSTANCES:-3}"
  # Streams can be long; the timeout includes a cold start.
  --timeout 900
  # CPU is needed between requests too (the model stays loaded; streams keep going).
  --no-cpu-throttling
  --cpu-boost
  # No request reaches an instance before /health says the model is loaded (it is 503 until
  # then; with --require-gpu, 500 for good without a usable GPU, which fails the revision).
  # The same probe as service.yaml's startupProbe: up to 120 s of loading.
  --startup-probe "httpGet.path=/health,httpGet.port=8080,periodSeconds=1,failureThreshold=120,timeoutSeconds=1"
  # After that /health is 503 only for good (a lost GPU): restart the instance. As
  # service.yaml's livenessProbe.
  --liveness-probe "httpGet.path=/health,httpGet.port=8080,periodSeconds=10,failureThreshold=3,timeoutSeconds=5"
)
if [ "${GPU:-0}" = "1" ]; then
  # Cloud Run's GPU flags: one NVIDIA L4; CPU always allocated; at least 4 CPU and 16 GiB.
  flags+=(--gpu 1 --gpu-type nvidia-l4 --no-gpu-zonal-redundancy --cpu 4 --memory 16Gi)
else
  flags+=(--cpu 4 --memory 4Gi)
fi
if [ -n "${CORS:-}" ]; then
  # The image's command is fixed; the server reads the origin from its environment.
  flags+=(--set-env-vars "SAMEMATH_CORS=$CORS")
fi
if [ "${PUBLIC:-0}" = "1" ]; then
  flags+=(--allow-unauthenticated)
else
  flags+=(--no-allow-unauthenticated)
fi
run gcloud run deploy "$SERVICE" "${flags[@]}"
[ "$DRY_RUN" = 1 ] && exit 0
URL="$(gcloud run services describe "$SERVICE" --region "$REGION" --project "$PROJECT" --format 'value(status.url)')"
echo
echo "deployed: $URL"
echo "try:      samemath generate --remote $URL \"Why is the sky blue?\""
