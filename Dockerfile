# One image for every Python service of the pipeline; each compose service picks its module with
# `command:` (the default runs the Kinesis consumer).
FROM python:3.11-slim AS wheel
# README.md* : pyproject.toml names it as the long description; the glob keeps the build working
# in a checkout without it.
WORKDIR /src
COPY pyproject.toml README.md* ./
COPY stages ./stages
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

# The runtime image holds the installed wheel and its runtime dependencies only: no source tree
# on sys.path, so the container runs exactly what `pip install stages` gives a user.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY --from=wheel /dist /tmp/dist
RUN pip install /tmp/dist/stages-*.whl \
    && rm -rf /tmp/dist \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin app \
    && mkdir -p /app/.run/data && chown -R app:app /app/.run
WORKDIR /app

# Services write their run files under RUN_DIR and their data (spool, state database, category
# and consolidated files, ground truth) under DATA_DIR. The directory exists in the image, owned
# by `app`, so a named volume mounted there starts with that owner; nothing runs as root.
ENV RUN_DIR=/app/.run \
    DATA_DIR=/app/.run/data
USER app

# Stage 00 services, dashboard, consumer (each compose service publishes its own).
EXPOSE 8000-8005 8010 8011
# The registry knows each service's port and health path; compose overrides the service name.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "stages.ops.fleet", "probe", "kinesis-consumer"]
CMD ["python", "-m", "stages.consumer"]
