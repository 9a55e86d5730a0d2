# shopper-segments: the pipeline in a container, for every target (DuckDB, PostgreSQL, Redshift).
#   podman build --build-arg BASE_IMAGE=localhost/shopper-segments-base:bookworm -t shopper-segments .
#   podman run --rm -v /lake/events:/data/events:ro -v segments-data:/data/warehouse shopper-segments
#   podman run --rm --env-file redshift.env shopper-segments run --retrain        (monthly retraining)
# The entrypoint is the `segments` command: `run` (default: load, fit where needed, dbt build), `load`,
# `fit`, `dbt -- <args>`. SEGMENTS_TARGET chooses the warehouse (duckdb, postgres, redshift); credentials
# come from the environment only (profiles/profiles.yml). Runs as the unprivileged user 10001.
# BASE_IMAGE: Debian bookworm with python3 (3.11), python3-venv and python3-pip, e.g. the official image
# below or one made locally with debootstrap (docs/deployment.md).
ARG BASE_IMAGE=docker.io/library/python:3.11.13-slim-bookworm
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

# Dependencies first (every version pinned): this layer is reused while only the project changes.
# The test suites shipped inside the numeric libraries are removed: about 80 MB nobody runs here
# (only theirs: dbt's own `tests` folders hold macros it needs).
COPY requirements/runtime.txt requirements/warehouses.txt requirements/
RUN python3 -m venv /opt/venv \
    && pip install --no-compile -r requirements/warehouses.txt \
    && for package in numpy pandas pyarrow scipy sklearn; do \
           find /opt/venv/lib/python3*/site-packages/$package -depth -type d -name tests -exec rm -rf {} +; \
       done

COPY pyproject.toml README.md ./
COPY src/ src/
RUN pip install --no-compile --no-deps . && rm -rf build src/*.egg-info

# The dbt project as a whole (whatever folders dbt_project.yml uses: models, macros, seeds, snapshots,
# tests/dbt ...); .dockerignore leaves out the rest (git, venv, docs, pytest suite, generated data).
COPY . ./

# Root owns the code; the pipeline user can write only its data folders.
RUN useradd --create-home --uid 10001 --user-group segments \
    && mkdir -p /data/warehouse /data/events \
    && chown -R segments:segments /data

USER 10001:10001
VOLUME ["/data/warehouse"]
ENTRYPOINT ["segments"]
CMD ["run"]
