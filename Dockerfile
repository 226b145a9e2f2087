# One image for every process: the command chooses which (see compose.yaml).
# BASE_IMAGE is the official python image; the compose stack test passes a local one
# (scripts/local-images.sh) because it cannot reach a registry.
ARG BASE_IMAGE=python:3.11-slim

# the whole context (.dockerignore leaves out what is not the project) goes into a virtualenv here
FROM ${BASE_IMAGE} AS build
WORKDIR /src
RUN python3 -m venv /opt/venv
COPY pyproject.toml README.md ./
RUN /opt/venv/bin/pip install --no-cache-dir --upgrade pip >/dev/null
COPY . .
RUN /opt/venv/bin/pip install --no-cache-dir . && rm -rf build *.egg-info

# the final image has that virtualenv and nothing used to build it
FROM ${BASE_IMAGE}
RUN useradd --create-home --uid 10001 coproduction
COPY --from=build /opt/venv /opt/venv
USER coproduction
WORKDIR /home/coproduction
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 VAR_DIR=/home/coproduction/var
EXPOSE 8000 8001 8002 8003 8004 9100
# a web process answers its own /readyz; a worker (relay, consumer, ...) its metrics port
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=5 CMD ["python3", "-c", "import os, urllib.request; port = os.environ.get('PORT'); urllib.request.urlopen(f'http://127.0.0.1:{port}/readyz' if port else 'http://127.0.0.1:%s/metrics' % os.environ.get('METRICS_PORT', '9100'), timeout=3)"]
CMD ["coproduction", "--help"]
