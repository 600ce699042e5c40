# syntax=docker/dockerfile:1
#
# PeaRL image: one image for every process. The command picks the process:
#   docker run IMAGE                  -> pearl run api   (default)
#   docker run IMAGE run relay        -> pearl run relay
#   docker run IMAGE run projector    -> pearl run projector
#   docker run IMAGE run worker       -> pearl run worker
#   docker run IMAGE migrate          -> one-shot: event store, read models, JetStream streams
# Configuration comes from the environment: NATS_URL, DATABASE_URL, PEARL_* (see infra/README.md).

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------
# build: install the package and its dependencies into a self-contained venv
# ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# The build context is filtered by .dockerignore (no .venv, .git, tests, caches).
COPY . .
RUN pip install --no-cache-dir --upgrade pip \
 && pip install --no-cache-dir . \
 && pearl --help >/dev/null

# ---------------------------------------------------------------------------
# runtime: slim base + the venv, running as an unprivileged user
# ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="PeaRL" \
      org.opencontainers.image.description="Event-sourced governance for software that AI agents and CI/CD push toward production" \
      org.opencontainers.image.licenses="Apache-2.0"

RUN groupadd --system --gid 10001 pearl \
 && useradd --system --uid 10001 --gid pearl --home-dir /home/pearl --create-home \
        --shell /usr/sbin/nologin pearl

COPY --from=build /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PEARL_HOME=/home/pearl/.pearl \
    PEARL_HOST=0.0.0.0 \
    PEARL_PORT=8000

WORKDIR /home/pearl
# Numeric so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001

EXPOSE 8000

# Liveness of the api process (GET /health). slim has no curl, so use the stdlib.
# relay/projector/worker/migrate share this image but listen on no port: disable the check
# for them (docker-compose.yml does: `healthcheck: {disable: true}`), and on Kubernetes use
# probes instead (/health for liveness, /ready for readiness).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PEARL_PORT', '8000'), timeout=4)"]

ENTRYPOINT ["pearl"]
CMD ["run", "api"]
