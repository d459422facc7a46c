# syntax=docker/dockerfile:1
# Sluice's container image: docs/deploy.md. Build: docker build -t sluice:0.1.0 .
# BASE_IMAGE must be a Debian-based Python 3.11+ image with `python3 -m venv` and apt (default python:3.11-slim);
# the builder and the runtime use the same one, so the virtualenv copied between them finds its interpreter.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS builder
ARG POETRY_VERSION=2.5.1
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    POETRY_NO_INTERACTION=1 \
    POETRY_CACHE_DIR=/tmp/poetry-cache \
    PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/poetry \
    && /opt/poetry/bin/pip install --no-cache-dir "poetry==${POETRY_VERSION}"
WORKDIR /src
COPY deploy/docker/build-venv.sh /usr/local/bin/build-venv.sh
# The lock file first: the dependency layer is rebuilt only when pyproject.toml or poetry.lock change.
COPY pyproject.toml poetry.lock README.md ./
RUN POETRY=/opt/poetry/bin/poetry STEP=deps sh /usr/local/bin/build-venv.sh /opt/sluice \
    && rm -rf /tmp/poetry-cache
COPY src ./src
RUN POETRY=/opt/poetry/bin/poetry STEP=app sh /usr/local/bin/build-venv.sh /opt/sluice /tmp/wheels \
    && rm -rf /tmp/poetry-cache /tmp/wheels

FROM ${BASE_IMAGE} AS runtime
ARG SLUICE_BUILD=container
LABEL org.opencontainers.image.title="sluice" \
      org.opencontainers.image.description="An OpenAI-compatible API gateway" \
      org.opencontainers.image.licenses="Apache-2.0"
# tini is PID 1: it passes SIGTERM (docker stop, Kubernetes) to the server and reaps orphaned helper processes.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 sluice \
    && useradd --system --uid 10001 --gid sluice --home-dir /var/lib/sluice --no-create-home \
       --shell /usr/sbin/nologin sluice \
    && mkdir -p /etc/sluice /var/lib/sluice \
    && chown sluice:sluice /var/lib/sluice
COPY --from=builder /opt/sluice /opt/sluice
# Settings come from the environment (README "Configuration"); these are the image's defaults.
# The config file: mount it at /etc/sluice/sluice.yaml (the working directory, so `./sluice.yaml` finds it) or set
# SLUICE_CONFIG; with neither, the built-in mock-only config is served. Keys: SLUICE_API_KEYS (required).
ENV PATH=/opt/sluice/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SLUICE_HOST=0.0.0.0 \
    SLUICE_PORT=8000 \
    SLUICE_DATA_DIR=/var/lib/sluice \
    SLUICE_BUILD=${SLUICE_BUILD}
WORKDIR /etc/sluice
# The SQLite request log (when SLUICE_DATABASE_URL is not set), its spill file and the key pepper file live here.
VOLUME ["/var/lib/sluice"]
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('SLUICE_PORT', '8000'), timeout=4)"]
# Exec form: `sluice serve` execs granian's supervisor in place, so the signal tini forwards reaches the server.
ENTRYPOINT ["tini", "--", "sluice"]
CMD ["serve"]
