#!/usr/bin/env bash
# Build the image and deploy `samemath serve` to Cloud Run (private by default).
#
#   PROJECT=my-project REGION=europe-west1 deploy/deploy.sh
#   PUBLIC=1 deploy/deploy.sh          # allow unauthenticated calls (e.g. for the browser build)
#   GPU=1 deploy/deploy.sh             # an NVIDIA L4 instance (see the note on GPUs in README)
#
# Needs gcloud (logged in) and docker. Prints the service URL; point the app at it:
#   samemath generate --remote "$URL" "Why is the sky blue?"
set -euo pipefail
cd "$(dirname "$0")/.."

PROJECT="${PROJECT:-$(gcloud config get-value project 2>/dev/null)}"
REGION="${REGION:-us-central1}"
SERVICE="${SERVICE:-samemath}"
REPO="${REPO:-samemath}"
IMAGE="$REGION-docker.pkg.dev/$PROJECT/$REPO/samemath:$(git rev-parse --short HEAD 2>/dev/null || echo latest)"
[ -n "$PROJECT" ] || { echo "set PROJECT (or gcloud config set project ...)" >&2; exit 2; }

gcloud artifacts repositories describe "$REPO" --location "$REGION" --project "$PROJECT" >/dev/null 2>&1 \
  || gcloud artifacts repositories create "$REPO" --repository-format docker \
       --location "$REGION" --project "$PROJECT"
gcloud auth configure-docker "$REGION-docker.pkg.dev" --quiet
docker build -f deploy/Dockerfile --build-arg "GPU=${GPU:-0}" -t "$IMAGE" .
docker push "$IMAGE"

flags=(
  --image "$IMAGE" --region "$REGION" --project "$PROJECT"
  --port 8080
  # serve runs 2 answers at once and queues 8; Cloud Run sends at most this many per instance.
  --concurrency 4
  --max-instances "${MAX_INSTANCES:-3}"
  # Streams can be long; the timeout includes a cold start.
  --timeout 900
  # CPU is needed between requests too (the model stays loaded; streams keep going).
  --no-cpu-throttling
)
if [ "${GPU:-0}" = "1" ]; then
  # Cloud Run's GPU flags: one NVIDIA L4, CPU always allocated, at least 4 CPU / 16 GiB.
  flags+=(--gpu 1 --gpu-type nvidia-l4 --cpu 4 --memory 16Gi --no-gpu-zonal-redundancy)
else
  flags+=(--cpu 4 --memory 4Gi)
fi
if [ "${PUBLIC:-0}" = "1" ]; then
  flags+=(--allow-unauthenticated)
else
  flags+=(--no-allow-unauthenticated)
fi
gcloud run deploy "$SERVICE" "${flags[@]}"
URL="$(gcloud run services describe "$SERVICE" --region "$REGION" --project "$PROJECT" --format 'value(status.url)')"
echo
echo "deployed: $URL"
echo "try:      samemath generate --remote $URL \"Why is the sky blue?\""
