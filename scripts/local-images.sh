#!/usr/bin/env bash
# Base images made on this machine, for where no container registry can be reached (the compose
# stack test): Debian bookworm minbase trees from debootstrap, `docker import`ed and tagged.
# Each stands in for an official image (python:3.11-slim, postgres:16, rabbitmq:3.13-management)
# and keeps its contract (deploy/local-images/); redis stands in for redis:7. A tree is made only when
# its tag does not exist yet.
set -euo pipefail
cd "$(dirname "$0")/.."
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
TAG=${LOCAL_IMAGE_TAG:-bookworm-1}
WORK=${LOCAL_IMAGE_DIR:-var/local-images}
# outbound HTTPS may go through a proxy with its own CA: the host's bundle goes into every image
CA=/etc/ssl/certs/ca-certificates.crt

make_image() {  # name, packages, docker import --change arguments...
  local name=$1 packages=$2; shift 2
  local rootfs="coproduction-local/$name-rootfs:$TAG"
  if ! docker image inspect "$rootfs" >/dev/null 2>&1; then
    local root="$WORK/$name"
    rm -rf "$root"
    mkdir -p "$WORK"
    echo "debootstrap $name ($packages)" >&2
    nice -n 10 debootstrap --variant=minbase --include="$packages" bookworm "$root" "$MIRROR" >"$WORK/$name.log" 2>&1 \
      || { tail -20 "$WORK/$name.log" >&2; exit 1; }
    mkdir -p "$root/etc/ssl/certs"
    cp "$CA" "$root/etc/ssl/certs/ca-certificates.crt"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . | nice -n 10 docker import "$@" - "$rootfs" >/dev/null
    rm -rf "$root"
  fi
  # the entrypoint keeping the official image's contract is a layer of its own: a change to it
  # rebuilds in a second, not a debootstrap
  local entrypoint="deploy/local-images/$name-entrypoint.sh"
  if [ -f "$entrypoint" ]; then
    printf 'FROM %s\nCOPY %s /usr/local/bin/docker-entrypoint.sh\nENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]\n' \
      "$rootfs" "$name-entrypoint.sh" | docker build -q -t "coproduction-local/$name:$TAG" -f - deploy/local-images >/dev/null
  else
    docker tag "$rootfs" "coproduction-local/$name:$TAG"
  fi
}

make_image python python3,python3-venv,python3-pip,python-is-python3,ca-certificates \
  --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]'

make_image postgres postgresql-15 \
  --change 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV PGDATA=/var/lib/postgresql/data' \
  --change 'EXPOSE 5432'

make_image rabbitmq rabbitmq-server \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'EXPOSE 5672 15672'

make_image redis redis-server \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'EXPOSE 6379' \
  --change 'CMD ["redis-server"]'
