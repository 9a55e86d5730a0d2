# shopper-segments: the dbt project, its Python fitting code and dbt, ready to run the pipeline.
#   podman build --build-arg BASE_IMAGE=localhost/bookworm-python -t shopper-segments .
#   podman run -v /lake/events:/data/events:ro -v segments-data:/data/warehouse shopper-segments run
# BASE_IMAGE: any Debian-like image with python3 (3.11) and python3-venv; see docs/deployment.md.
ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH \
    SEGMENTS_PROJECT_DIR=/app \
    DBT_PROFILES_DIR=/app/profiles \
    DBT_TARGET_PATH=/data/warehouse/dbt-target \
    DBT_LOG_PATH=/data/warehouse/dbt-logs \
    DBT_SEND_ANONYMOUS_USAGE_STATS=false \
    SEGMENTS_TARGET=duckdb \
    SEGMENTS_DUCKDB_PATH=/data/warehouse/shopper_segments.duckdb \
    SEGMENTS_EVENTS=/data/events

WORKDIR /app

# Dependencies first: this layer is reused while only the project changes.
COPY requirements/runtime.txt requirements/runtime.txt
RUN python3 -m venv /opt/venv \
    && pip install --no-compile -r requirements/runtime.txt

COPY pyproject.toml README.md ./
COPY src/ src/
RUN pip install --no-compile --no-deps . && rm -rf build src/*.egg-info

COPY dbt_project.yml ./
COPY profiles/ profiles/
COPY macros/ macros/
COPY models/ models/
COPY python_models/ python_models/
COPY seeds/ seeds/
COPY tests/dbt/ tests/dbt/
COPY data/sample/ data/sample/

RUN useradd --create-home --uid 10001 --user-group segments \
    && mkdir -p /data/warehouse /data/events \
    && chown -R segments:segments /data

USER 10001:10001
VOLUME ["/data/warehouse"]
ENTRYPOINT ["segments"]
CMD ["run"]
