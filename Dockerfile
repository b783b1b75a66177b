# The container image of proxmox-vm-operator. One image runs the operator (the default command)
# and the Proxmox VE API simulator (`proxmox-vm-operator simulator`, used by the sandbox).
#
#   docker build -t proxmox-vm-operator:0.1.0 \
#     --build-arg REVISION="$(git rev-parse HEAD)" \
#     --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
#     --build-arg SOURCE_URL=https://example.org/your/repository .
#
# The base image is pinned by tag (for the reader) and by digest (what is actually pulled: a
# multi-platform index, so amd64 and arm64 builds both work). Bump both together; the new digest
# is the one `docker buildx imagetools inspect python:<tag>` prints for the index. There is no
# `# syntax=` line on purpose: the builder's own frontend is used, not an unpinned image.

# --- the interpreter both stages share -----------------------------------------------------------
FROM python:3.12.14-slim-bookworm@sha256:782412e85d0f0984994c290652577d4018aff08145c85b262bb63dc0c7522254 AS base

# Logs go out as they are written; nothing tries to write bytecode next to the sources (the
# root filesystem is read-only at run time, and the bytecode is compiled at build time anyway).
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1


# --- build: a wheel of this project, installed with its dependencies into /opt/venv -------------
FROM base AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /src
# Only what the wheel is built from (.dockerignore keeps everything else out of the context).
COPY pyproject.toml README.md ./
COPY operator/ operator/

# The venv gets no pip of its own: the base image's pip installs into it. The base dependencies
# only: the sandbox and test extras (kmock, pytest, linters) never enter the image. pip compiles
# the bytecode while installing, so nothing has to be compiled (or written) at run time.
RUN python -m venv --without-pip /opt/venv \
 && python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && python -m pip --python /opt/venv/bin/python install --no-cache-dir --compile /wheels/*.whl


# --- runtime: the interpreter and the venv, nothing else -----------------------------------------
FROM base AS runtime

ARG VERSION=0.1.0
ARG REVISION=""
ARG CREATED=""
ARG SOURCE_URL=""

LABEL org.opencontainers.image.title="proxmox-vm-operator" \
      org.opencontainers.image.description="Kubernetes operator that reconciles Proxmox VE virtual machines from ProxmoxVM resources, with a destroy policy that never hangs on the guest" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.base.name="docker.io/library/python:3.12.14-slim-bookworm" \
      org.opencontainers.image.base.digest="sha256:782412e85d0f0984994c290652577d4018aff08145c85b262bb63dc0c7522254"

COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# A numeric user and group, so `runAsNonRoot: true` can verify it without an /etc/passwd entry.
# HOME points at the one writable place the manifests provide (an emptyDir on /tmp) for any
# library that looks there; the operator itself writes nothing. The simulator writes its TLS
# files there too, unless --cert-dir says otherwise.
ENV HOME=/tmp
USER 65532:65532

# 8000: Prometheus /metrics (--metrics-port); 8080: liveness /healthz (--liveness-port).
EXPOSE 8000 8080

# No HEALTHCHECK: Kubernetes ignores it; the Deployment's livenessProbe calls /healthz instead.
ENTRYPOINT ["proxmox-vm-operator"]
CMD ["run", "-A"]
