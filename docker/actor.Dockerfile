# The actor image: the core dependency set only (numpy, msgpack, pyzmq, gymnasium, onnxruntime, tyro, tqdm), no
# torch. Build from the repository root:  docker build -f docker/actor.Dockerfile -t agalite-rl/actor .
# Configure with AGALITE_<FLAG> environment variables (python -m actor --help), e.g. AGALITE_LEARNER_HOST.

ARG PYTHON_IMAGE=python:3.11-slim
# onnxruntime-gpu for actors on GPU machines (`python -m actor --device cuda`; the host needs the NVIDIA driver and
# the NVIDIA Container Toolkit, the image CUDA 12 and cuDNN 9 as onnxruntime-gpu documents):
#   docker build -f docker/actor.Dockerfile --build-arg ONNXRUNTIME_PACKAGE=onnxruntime-gpu -t agalite-rl/actor:gpu .
ARG ONNXRUNTIME_PACKAGE=onnxruntime

# ---- build stage: a virtual environment with the pinned core set; pip, its caches and the sources stay here.
FROM ${PYTHON_IMAGE} AS build
ARG ONNXRUNTIME_PACKAGE
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
WORKDIR /src
# The core set, pinned by constraints.txt, and no extras: this is the line that keeps torch out of the image. It is
# installed before the sources are copied, so a change to the code reuses this layer.
COPY pyproject.toml constraints.txt ./
COPY docker/project_requirements.py /tmp/project_requirements.py
RUN ONNXRUNTIME_PACKAGE=${ONNXRUNTIME_PACKAGE} python /tmp/project_requirements.py > /tmp/requirements.txt \
 && /opt/venv/bin/pip install --no-cache-dir -c constraints.txt -r /tmp/requirements.txt
# Only what the actor imports: the wire protocol, the environments, the policy contract and the actor itself
# (torch-free by design).
COPY README.md ./
COPY protocol ./protocol
COPY envs ./envs
COPY policy ./policy
COPY actor ./actor
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps -c constraints.txt . \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/pip uninstall --yes pip \
 && find /opt/venv -name '__pycache__' -type d -prune -exec rm -rf {} +

# ---- runtime stage: the slim base plus the virtual environment, run as an unprivileged user.
FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 agalite \
 && useradd --system --uid 10001 --gid agalite --home-dir /home/agalite --create-home --shell /usr/sbin/nologin agalite
COPY --from=build /opt/venv /opt/venv
COPY docker/healthcheck.py /opt/agalite/healthcheck.py
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    AGALITE_LEARNER_HOST=learner
USER agalite
WORKDIR /home/agalite
# Healthy = the actor process holds an established connection to the learner's control port (AGALITE_CONTROL_PORT).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/opt/agalite/healthcheck.py", "actor"]
CMD ["python", "-m", "actor"]
