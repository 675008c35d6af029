# The learner image: the core set plus the `learner` extra (torch, onnx, tensorboard), pinned by constraints.txt.
# Also runs TensorBoard in the compose stack. Build from the repository root:
#   docker build -f docker/learner.Dockerfile -t agalite-rl/learner .                           # CPU torch
#   docker build -f docker/learner.Dockerfile --build-arg TORCH_VARIANT=cuda -t agalite-rl/learner:cuda .
# TORCH_VARIANT: cpu (default, https://download.pytorch.org/whl/cpu), cuda (the default PyPI wheel, a CUDA 12
# build for Linux x86_64) or a PyTorch index name such as cu126 / cu128 (https://download.pytorch.org/whl/<name>).
# The CUDA builds need the NVIDIA driver and the NVIDIA Container Toolkit on the host (docker-compose.gpu.yml).

ARG PYTHON_IMAGE=python:3.11-slim

# ---- build stage: a virtual environment with the pinned learner set; pip and its caches stay here.
FROM ${PYTHON_IMAGE} AS build
ARG TORCH_VARIANT=cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY protocol ./protocol
COPY envs ./envs
COPY policy ./policy
COPY models ./models
COPY export ./export
COPY actor ./actor
COPY learner ./learner
COPY configs ./configs
# The learner runs from /app (presets are read from /app/configs), so the project is installed in editable mode
# and its sources stay at /app; the dependencies come from constraints.txt like every other install.
RUN set -eu; \
    case "$TORCH_VARIANT" in \
      cuda) index="" ;; \
      cpu|cu[0-9]*|rocm*) index="--index-url https://download.pytorch.org/whl/$TORCH_VARIANT \
                                 --extra-index-url https://pypi.org/simple" ;; \
      *) echo "unknown TORCH_VARIANT=$TORCH_VARIANT (cpu, cuda, cu126, cu128, ...)" >&2; exit 1 ;; \
    esac; \
    /opt/venv/bin/pip install --no-cache-dir $index -c constraints.txt -e ".[learner]"; \
    /opt/venv/bin/python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"; \
    /opt/venv/bin/pip uninstall --yes pip; \
    find /opt/venv /app -name '__pycache__' -type d -prune -exec rm -rf {} +

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
