# metrics-bridge container image.
#
#   docker build -t metrics-bridge:0.1.0 .
#   docker run --rm -p 9877:9877 --read-only --tmpfs /tmp \
#     -v "$PWD/config.yaml:/etc/metrics-bridge/config.yaml:ro" metrics-bridge:0.1.0
#
# Stage 1 builds the wheel and installs it, with its dependencies, into a virtualenv; stage 2 copies only that
# virtualenv onto a fresh slim Python base: no compiler, no wheel, no pip cache. tests/test_dockerfile.py runs
# stage 1's RUN commands on the host (there is no Docker engine in CI) and lints this file with hadolint.

ARG PYTHON_IMAGE=docker.io/library/python:3.13-slim-trixie

FROM ${PYTHON_IMAGE} AS build
# The virtualenv lives at the same path in both stages: its scripts hard-code their interpreter's path.
ENV VIRTUAL_ENV=/opt/metrics-bridge \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter/ exporter/
# Only the build stage has pip: the venv is made without one and filled by the base image's pip (--python).
# pip compiles every module to bytecode while installing, so nothing needs writing at run time.
RUN python -m pip wheel --no-deps --wheel-dir dist . \
 && python -m venv --without-pip "$VIRTUAL_ENV" \
 && python -m pip --python "$VIRTUAL_ENV/bin/python" install dist/*.whl

FROM ${PYTHON_IMAGE}
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="metrics-bridge" \
      org.opencontainers.image.description="Poll third-party HTTP/JSON APIs on a schedule and serve the numbers as Prometheus metrics." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
ENV VIRTUAL_ENV=/opt/metrics-bridge \
    PATH="/opt/metrics-bridge/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/tmp \
    MALLOC_ARENA_MAX=2
# MALLOC_ARENA_MAX=2: fewer glibc malloc arenas for the poll and scrape threads (bench/: peak RSS 263 → 234 MiB).
# A fixed numeric UID/GID, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
RUN groupadd --system --gid 65532 metrics-bridge \
 && useradd --system --no-log-init --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin metrics-bridge
# Root-owned and read-only to the process: the code and the default config cannot be changed by it.
COPY --from=build /opt/metrics-bridge /opt/metrics-bridge
COPY examples/config.yaml /etc/metrics-bridge/config.yaml
USER 65532:65532
EXPOSE 9877
ENTRYPOINT ["metrics-bridge"]
CMD ["run", "--config", "/etc/metrics-bridge/config.yaml"]
