# The Engage the predictor: V1 :predict and V2 /infer of the three heads.
# Build from the repository root (make images does, where Docker exists):
#   docker build -f serving/predictor.Dockerfile -t ghcr.io/engage-ml/engage-predictor:<version> .
# Licence-clean by default (no alibi / alibi-detect, BSL 1.1); add them with --build-arg EXTRAS=aws,alibi.
# Runs as uid 10001 with a read-only root filesystem: mount an emptyDir at /tmp (all it writes).
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
FROM ${PYTHON_IMAGE} AS build
ARG EXTRAS=aws
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PROJECT_ENVIRONMENT=/opt/engage UV_PYTHON_DOWNLOADS=never
WORKDIR /src
# the workspace's manifests, then the two packages this image installs: engage (the library, without its
# training extras) and engage-serving; the components package is not installed (its manifest only
# completes the workspace)
COPY pyproject.toml uv.lock README.md LICENSE ./
COPY components/pyproject.toml components/README.md ./components/
COPY src ./src
COPY contracts ./contracts
COPY policies ./policies
COPY serving ./serving
RUN uv sync --frozen --no-dev --no-editable --package engage-serving \
    $(printf -- '--extra %s ' $(echo "$EXTRAS" | tr ',' ' '))

FROM ${PYTHON_IMAGE}
# libgomp1: xgboost's OpenMP runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin engage
COPY --from=build /opt/engage /opt/engage
ENV PATH=/opt/engage/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    NUMBA_CACHE_DIR=/tmp/numba
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["python", "-m", "engage_serving.predictor"]
CMD ["--model_dir", "/mnt/models"]
