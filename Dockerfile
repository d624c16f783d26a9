# syntax=docker/dockerfile:1.7
#
# One image for every chargenet service; the command picks the service:
#   docker run IMAGE run wallet        (or registry, escrow, gateway, invoicing, signer)
#   docker run IMAGE migrate escrow    (the Helm chart's migration Jobs)
#   docker run IMAGE check             (validate CHARGENET_* and reach the bus and the database)
#
# Build:  docker build -t chargenet:dev .
#
# Stage "build" installs the locked workspace (uv.lock, no dev tools) into /opt/chargenet as
# regular wheels, so the final stage needs no source tree and no build tools. The compiled contract
# artifacts (chargenet/core/chain/compiled/*.json) and the generated gRPC code
# (chargenet/core/signer_client/_generated) live inside the core package and ship with it; the
# build fails if either is missing.

ARG PYTHON_VERSION=3.11
ARG DEBIAN_RELEASE=bookworm
ARG UV_VERSION=0.13.9

FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

# ---------------------------------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS build
COPY --from=uv /uv /usr/local/bin/uv

# Bytecode compiled now: the final image runs on a read-only root filesystem.
# The interpreter is the base image's: the final stage has the same one at the same path, so the
# virtual environment's links stay valid. uv never downloads a Python of its own.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python${PYTHON_VERSION} \
    UV_PROJECT_ENVIRONMENT=/opt/chargenet \
    UV_FROZEN=1

WORKDIR /src

# Dependencies first, from the lock file and the members' pyproject.toml only: this layer is
# reused until a dependency changes. tests/deploy checks that every workspace member is listed.
COPY pyproject.toml uv.lock ./
COPY libs/core/pyproject.toml libs/core/pyproject.toml
COPY libs/cli/pyproject.toml libs/cli/pyproject.toml
COPY services/wallet/pyproject.toml services/wallet/pyproject.toml
COPY services/registry/pyproject.toml services/registry/pyproject.toml
COPY services/escrow/pyproject.toml services/escrow/pyproject.toml
COPY services/gateway/pyproject.toml services/gateway/pyproject.toml
COPY services/invoicing/pyproject.toml services/invoicing/pyproject.toml
COPY services/signer/pyproject.toml services/signer/pyproject.toml
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --no-dev --no-install-workspace

# Then chargenet itself, installed as wheels (not editable) so /src is not needed at run time.
COPY libs libs
COPY services services
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --no-dev --no-editable

# Fail the build, not the first pod, when the package lost its data files or an entry point.
RUN /opt/chargenet/bin/python -c "\
import importlib.resources as r; \
import chargenet.core.signer_client._generated.signer_pb2_grpc; \
a = r.files('chargenet.core.chain') / 'compiled'; \
names = sorted(p.name for p in a.iterdir() if p.name.endswith('.json')); \
assert {'ChargeToken.json', 'ChargingEscrow.json', 'StationRegistry.json'} <= set(names), names; \
print('artifacts:', names)" \
 && for entry in chargenet chargenet-wallet chargenet-registry chargenet-escrow chargenet-gateway \
        chargenet-invoicing chargenet-signer; do \
      test -x "/opt/chargenet/bin/$entry" || { echo "missing entry point $entry" >&2; exit 1; }; \
    done

# ---------------------------------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS runtime

ARG PYTHON_VERSION
LABEL org.opencontainers.image.title="chargenet" \
      org.opencontainers.image.description="Pay-per-session EV charging settled on Ethereum: every chargenet service"

# pip, setuptools and wheel are build tools the services never use: remove them. The user has a
# fixed UID/GID so Kubernetes' runAsNonRoot can verify it (and the chart's securityContext uses it).
RUN python -m pip uninstall --yes --quiet pip setuptools wheel \
 && rm -rf /usr/local/lib/python${PYTHON_VERSION}/ensurepip /root/.cache \
 && groupadd --system --gid 10001 chargenet \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp \
      --shell /usr/sbin/nologin chargenet

# Owned by root and not writable by the service user: the code cannot be changed at run time.
COPY --from=build /opt/chargenet /opt/chargenet

ENV PATH=/opt/chargenet/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    CHARGENET_HTTP_HOST=0.0.0.0

USER 10001:10001
WORKDIR /tmp
# HTTP (health, readiness, metrics, APIs), OCPP WebSocket (gateway), gRPC (signer).
EXPOSE 8000 9000 50051

ENTRYPOINT ["chargenet"]
CMD ["--help"]
