# The learner image: the core set plus the `learner` extra (torch, onnx, tensorboard), pinned by constraints.txt.
# Also runs TensorBoard in the compose stack. Build from the repository root:
#   docker build -f docker/learner.Dockerfile -t agalite-rl/learner .                           # CPU torch
#   docker build -f docker/learner.Dockerfile --build-arg TORCH_VARIANT=cuda -t agalite-rl/learner:cuda .
# TORCH_VARIANT: cpu (default, https://download.pytorch.org/whl/cpu), cuda (the default PyPI wheel, a CUDA 12
# build for Linux x86_64) or a PyTorch index name such as cu126 / cu128 (https://download.pytorch.org/whl/<name>).
# The build fails unless the installed torch is that variant (docker/check_torch_variant.py): pip falls back to
# PyPI's CUDA wheel when the CPU index cannot be reached, and that must not pass for a CPU image.
# The CUDA builds need the NVIDIA driver and the NVIDIA Container Toolkit on the host (docker-compose.gpu.yml).
#
# Mirrors and offline builds:
#   --build-arg TORCH_INDEX_URL=URL   index torch comes from (default: PyTorch's index for TORCH_VARIANT)
#   --build-arg PYPI_INDEX_URL=URL    index everything else comes from (default: https://pypi.org/simple)
#   wheels in docker/wheels/          pip also looks there (--find-links); a torch wheel there is used instead of
#                                     the torch index, e.g. a CPU wheel copied from another machine
#   --build-context torchwheels=DIR   the same from any folder, with BuildKit 0.10+ (Docker 23+, buildx)

ARG PYTHON_IMAGE=python:3.11-slim

# ---- local wheels: docker/wheels/ of the build context, or the folder given as the `torchwheels` build context.
FROM scratch AS torchwheels
COPY docker/wheels/ /

# ---- build stage: a virtual environment with the pinned learner set; pip and its caches stay here.
FROM ${PYTHON_IMAGE} AS build
ARG TORCH_VARIANT=cpu
ARG TORCH_INDEX_URL=
ARG PYPI_INDEX_URL=https://pypi.org/simple
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
WORKDIR /app
# The dependencies first, before the sources, so that a change to the code reuses this layer (torch is ~200 MB).
COPY pyproject.toml constraints.txt ./
COPY docker/project_requirements.py docker/check_torch_variant.py /tmp/
COPY --from=torchwheels / /wheels/
RUN set -eu; \
    case "$TORCH_VARIANT" in \
      cuda) torch_index="$TORCH_INDEX_URL" ;; \
      cpu|cu[0-9]*|rocm*) torch_index="${TORCH_INDEX_URL:-https://download.pytorch.org/whl/$TORCH_VARIANT}" ;; \
      *) echo "unknown TORCH_VARIANT=$TORCH_VARIANT (cpu, cuda, cu126, cu128, ...)" >&2; exit 1 ;; \
    esac; \
    if ls /wheels/torch-*.whl >/dev/null 2>&1; then \
      echo "torch from the local wheels: $(cd /wheels && ls torch-*.whl)"; torch_index=""; \
    fi; \
    if [ -n "$torch_index" ]; then \
      index="--index-url $torch_index --extra-index-url $PYPI_INDEX_URL"; \
    else \
      index="--index-url $PYPI_INDEX_URL"; \
    fi; \
    python /tmp/project_requirements.py learner > /tmp/requirements.txt; \
    /opt/venv/bin/pip install --no-cache-dir $index --find-links /wheels -c constraints.txt -r /tmp/requirements.txt; \
    /opt/venv/bin/python /tmp/check_torch_variant.py "$TORCH_VARIANT"; \
    rm -rf /wheels
# The learner runs from /app (presets are read from /app/configs), so the project is installed in editable mode
# and its sources stay at /app.
COPY README.md ./
COPY protocol ./protocol
COPY envs ./envs
COPY policy ./policy
COPY models ./models
COPY export ./export
COPY actor ./actor
COPY learner ./learner
COPY configs ./configs
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps --index-url "$PYPI_INDEX_URL" -c constraints.txt -e ".[learner]" \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/pip uninstall --yes pip \
 && find /opt/venv /app -name '__pycache__' -type d -prune -exec rm -rf {} +

# ---- runtime stage: the slim base, the virtual environment and /app, run as an unprivileged user.
FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 agalite \
 && useradd --system --uid 10001 --gid agalite --home-dir /home/agalite --create-home \
        --shell /usr/sbin/nologin agalite \
 && mkdir -p /runs && chown agalite:agalite /runs
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
COPY docker/healthcheck.py /opt/agalite/healthcheck.py
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib
USER agalite
WORKDIR /app
# /runs holds run directories (checkpoints, metrics, policies); compose mounts a named volume here, which Docker
# initialises from this directory, so it belongs to the unprivileged user.
VOLUME ["/runs"]
EXPOSE 5555 5556 5557 6006
# Healthy = the learner's control port (where actors say Hello) accepts connections; the learner binds it only
# after loading its checkpoint and exporting the first policy, hence the start period.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "/opt/agalite/healthcheck.py", "tcp", "--port", "5557"]
CMD ["python", "-m", "learner", "--net.host", "0.0.0.0", "--run-dir", "/runs/tmaze-agalite"]
