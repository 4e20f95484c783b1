# trafficmirror: one image for the recorder sidecar, the replayer workers and the
# one-off CLI commands (`replay range`, `inspect`). The command is the argument:
#
#   docker build -t trafficmirror .
#   docker run --rm trafficmirror worker --help
#
# compose/ and k8s/ use this image for every trafficmirror process (and, in the
# examples, for the sample app and shadow too).
ARG PYTHON_IMAGE=python:3.12-slim
FROM ${PYTHON_IMAGE}

# No .pyc files in the image layers, unbuffered logs (they go to `docker logs`
# at once), and no pip cache left in the layer: set here rather than as flags so
# the install line below stays the README's install command, word for word.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can check it and volume
# permissions (fsGroup) are predictable.
RUN groupadd --system --gid 10001 trafficmirror \
 && useradd --system --uid 10001 --gid 10001 --create-home \
      --home-dir /home/trafficmirror --shell /usr/sbin/nologin trafficmirror

# Only what the distribution is built from (see .dockerignore): changing tests
# or docs does not invalidate the install layer.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY trafficmirror ./trafficmirror
COPY recorder ./recorder
COPY replayer ./replayer
COPY interchange ./interchange
COPY monitor ./monitor
COPY schemas ./schemas

# libinjection-python (the monitor's SQL injection / XSS detector) is published as source
# only: a C compiler builds it during the install below.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*

# The README's install step (.ci/validate-deploy checks the two stay the same).
RUN pip install .

USER 10001:10001
WORKDIR /home/trafficmirror

# 8081: the recorder's proxy port (--listen); 9100: /healthz, /readyz and
# /metrics when TRAFFICMIRROR_METRICS_PORT=9100 (and TRAFFICMIRROR_METRICS_HOST=0.0.0.0).
EXPOSE 8081 9100

# Liveness for the long-running commands (record, worker): GET /healthz on the
# metrics port. The metrics server only runs when TRAFFICMIRROR_METRICS_PORT is
# set (the compose file and the k8s manifests set it); without it there is
# nothing to ask, so the check passes rather than marking a one-off command such
# as `replay range` unhealthy. /healthz, not /readyz: a Kafka outage must not get
# the recorder restarted, since it keeps proxying live traffic meanwhile.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('TRAFFICMIRROR_METRICS_PORT'); sys.exit(0) if not port else urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]

ENTRYPOINT ["trafficmirror"]
CMD ["--help"]
