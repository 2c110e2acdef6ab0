# syntax=docker/dockerfile:1.7
# The batch image: `reco step ...` in every Job (command and args come from k8s/base/batch/job/job.yaml).
#
#   docker build -f docker/batch.Dockerfile --build-arg REVISION=$(git rev-parse HEAD) \
#     -t REGION-docker.pkg.dev/PROJECT/reco/reco-batch:$(git rev-parse HEAD) .
#
# The base is pinned to an exact version tag; scripts/release.sh passes PYTHON_IMAGE with the digest resolved at
# release time (python:3.11.11-slim-bookworm@sha256:...), so a release is reproducible to the byte.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY batch ./batch
COPY models ./models
RUN /opt/venv/bin/pip install .

FROM ${PYTHON_IMAGE}
ARG REVISION=unknown
LABEL org.opencontainers.image.source="reco-batch" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.description="reco batch steps (aggregate, train, candidates, export)"
# The same numeric ids as the pods' securityContext (runAsUser/runAsGroup 10001): non-root, no login shell.
RUN groupadd --system --gid 10001 reco \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin reco
COPY --from=build /opt/venv /opt/venv
# A copy of config/ for `docker run` by hand; in a Job the ConfigMaps are mounted over environments.yaml and
# pipelines/ of /etc/reco/config.
COPY config /etc/reco/config
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    RECO_CONFIG_DIR=/etc/reco/config \
    RECO_HOME=/tmp/reco \
    RECO_LOG_FORMAT=json \
    RECO_REVISION=${REVISION} \
    OPENBLAS_NUM_THREADS=1
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["reco"]
CMD ["--help"]
