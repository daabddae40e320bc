# plantwatch service image: the wheel installed into a slim Python, run as a non-root user.
#   docker build -t plantwatch .
#   docker run -e PLANTWATCH_INFLUX__TOKEN=... -v plantwatch-data:/data plantwatch
# The configuration is /etc/plantwatch/plantwatch.yaml (configs/docker.yaml); mount another file over
# it, or override single keys with PLANTWATCH_<SECTION>__<KEY> variables.

# -- build: the wheel, from the source tree (no editable install, no source in the final image)
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY alerts ./alerts
COPY api ./api
COPY detector ./detector
COPY ingest ./ingest
COPY plantwatch ./plantwatch
COPY telemetry ./telemetry
RUN python -m pip wheel --no-cache-dir --no-deps . -w /wheels

# -- run
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# The dependency versions CI tested (constraints/ci.txt), so an image built later runs the same code.
COPY constraints/ci.txt /tmp/constraints.txt
COPY --from=build /wheels /tmp/wheels
RUN pip install --constraint /tmp/constraints.txt /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels /tmp/constraints.txt \
    && useradd --system --uid 10001 --user-group --home-dir /data --no-create-home plantwatch \
    && mkdir -p /data/models /etc/plantwatch \
    && chown plantwatch:plantwatch /data /data/models
COPY configs/docker.yaml /etc/plantwatch/plantwatch.yaml

USER plantwatch
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
# No curl in the slim image: Python's urllib; /healthz answers 503 (an HTTPError, exit 1) when unhealthy.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["plantwatch"]
CMD ["run", "--config", "/etc/plantwatch/plantwatch.yaml"]
