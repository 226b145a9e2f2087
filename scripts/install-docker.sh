#!/usr/bin/env bash
# What the compose stack test needs on a Debian bookworm machine with no registry access:
# a Docker engine (docker.io), Compose 1.29 (docker-compose) and debootstrap, which makes the
# local base images (scripts/local-images.sh). Idempotent: installs only what is missing.
set -euo pipefail
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
