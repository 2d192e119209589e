#!/usr/bin/env bash
# Wait until every service of the compose stack reports healthy (docker-compose v1 has no `up --wait`).
set -euo pipefail
compose=(docker-compose -f "$(dirname "$0")/docker-compose.yaml")
for _ in $(seq 180); do
  ids=$("${compose[@]}" ps -q)
  states=$(for i in $ids; do docker inspect --format '{{.Name}} {{.State.Health.Status}}' "$i"; done)
  if [ -n "$ids" ] && ! grep -qv ' healthy$' <<<"$states"; then echo "$states"; exit 0; fi
  if grep -q unhealthy <<<"$states"; then echo "$states"; "${compose[@]}" logs --tail 30; exit 1; fi
  sleep 5
done
echo "not healthy after 15 min:"; echo "$states"; exit 1
