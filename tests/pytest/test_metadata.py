"""The project's metadata and packaging (issue 17, items 3-6).

- No deprecation warning: pip's resolution of the pinned requirements and the package's own build,
  and dbt's deprecations (`dbt parse --show-all-deprecations`).
- dbt-score over the manifest: the project and every public model at the threshold; every macro and
  argument documented; the example queries of the marts run.
- The semantic layer parses, and `mf query` (dbt-metricflow) answers its metrics on DuckDB with the
  numbers of segment_summary.
- The Kubernetes CronJobs in deploy/kubernetes agree with the Dockerfile, the CLI and the docs.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from conftest import PROJECT
from shopper_segments import cli

BIN = Path(sys.executable).parent
PUBLIC_MARTS = ["user_segments", "segment_summary", "segment_profiles", "segment_labels"]
# dbt validates YAML against its JSON schemas (which raises the "moved to config" and "custom key"
# deprecations) only for some adapters: redshift is one of them, duckdb is not. Placeholders only.
REDSHIFT_ENV = {
    "SEGMENTS_TARGET": "redshift",
    "SEGMENTS_REDSHIFT_HOST": "offline-check.redshift.invalid",
    "SEGMENTS_REDSHIFT_USER": "dbt_ci",
    "SEGMENTS_REDSHIFT_PASSWORD": "placeholder-not-a-secret",
}
KUBERNETES = PROJECT / "deploy" / "kubernetes"


def dbt_parse(target_dir: Path, **env: str) -> list[dict]:
    """`dbt parse --show-all-deprecations` into target_dir; returns dbt's structured log events."""
    environment = {
        **os.environ,
        "DBT_PROFILES_DIR": str(PROJECT / "profiles"),
        "DBT_TARGET_PATH": str(target_dir),
        "DBT_LOG_PATH": str(target_dir / "logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        **env,
    }
    result = subprocess.run(
        [str(BIN / "dbt"), "parse", "--show-all-deprecations", "--no-partial-parse", "--log-format", "json"],
        cwd=PROJECT, env=environment, capture_output=True, text=True,
    )
    assert result.returncode == 0, f"dbt parse failed:\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}"
    events = []
    for line in result.stdout.splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    return events


@pytest.fixture(scope="module")
def duckdb_parse(tmp_path_factory) -> tuple[dict, list[dict], Path]:
    """Manifest, log events and target folder of a parse on DuckDB (every model enabled)."""
    target = tmp_path_factory.mktemp("parse_duckdb")
    events = dbt_parse(target, SEGMENTS_TARGET="duckdb")
    return json.loads((target / "manifest.json").read_text()), events, target


@pytest.fixture(scope="module")
def deprecations(tmp_path_factory, duckdb_parse) -> list[str]:
    """Every dbt deprecation of a parse on DuckDB and on Redshift, as 'Name: message'."""
    redshift_events = dbt_parse(tmp_path_factory.mktemp("parse_redshift"), **REDSHIFT_ENV)
    found = []
    for event in duckdb_parse[1] + redshift_events:
        name = event["info"]["name"]
        if name.endswith("Deprecation") or (name.startswith("Deprecated") and name != "DeprecationsSummary"):
            message = re.sub(r"\x1b\[[0-9;]*m", "", event["info"]["msg"]).replace("\n", " ")
            found.append(f"{name}: {message}")
    return found


# ---------------------------------------------------------------------------------------------- item 3


def test_setup_resolves_without_deprecation_or_yanked_release():
    """What `make setup` installs (the pinned requirements and the package itself), resolved by pip:
    no yanked pin (pip warns), no deprecated packaging metadata (the build backend warns)."""
    result = subprocess.run(
        [str(BIN / "python"), "-m", "pip", "install", "--dry-run", "--ignore-installed",
         "-r", "requirements/dev.txt", "."],
        cwd=PROJECT, capture_output=True, text=True,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "Would install" in output
    warnings = [line for line in output.splitlines()
                if re.search(r"yanked|deprecat", line, re.IGNORECASE)]
    assert warnings == [], "\n".join(warnings)


def test_no_dbt_deprecation_outside_the_python_models(deprecations):
    elsewhere = [d for d in deprecations if "python_models/" not in d]
    assert elsewhere == [], "\n".join(elsewhere)


def test_no_dbt_deprecation_in_the_python_models(deprecations):
    in_python_models = [d for d in deprecations if "python_models/" in d]
    assert in_python_models == [], "\n".join(in_python_models)


# ---------------------------------------------------------------------------------------------- item 4


def dbt_score_threshold() -> float:
    return tomllib.loads((PROJECT / "pyproject.toml").read_text())["tool"]["dbt-score"]["fail_project_under"]


def test_dbt_score_of_the_project_and_of_every_public_model(duckdb_parse):
    manifest, _, target = duckdb_parse
    result = subprocess.run(
        [str(BIN / "dbt-score"), "lint", "--manifest", str(target / "manifest.json"), "--format", "json"],
        cwd=PROJECT, capture_output=True, text=True,
    )
    report = json.loads(result.stdout)
    threshold = dbt_score_threshold()
    public = [node["unique_id"] for node in manifest["nodes"].values()
              if node["resource_type"] == "model" and node["config"].get("access") == "public"]
    assert set(PUBLIC_MARTS) <= {name.split(".")[-1] for name in public}
    failing = {
        name: [f"{rule.split('.')[-1]}: {outcome.get('message')}"
               for rule, outcome in item["results"].items() if outcome["result"] != "OK"]
        for name, item in report["evaluables"].items() if item["score"] < 10
    }
    low_public = {name: report["evaluables"][name]["score"] for name in public
                  if report["evaluables"][name]["score"] < threshold}
    assert report["project"]["score"] >= threshold and low_public == {}, (
        f"project {report['project']['score']:.2f}, public models under {threshold}: {low_public}\n"
        + "\n".join(f"{name}: {problems}" for name, problems in failing.items())
    )


def test_every_macro_and_argument_is_documented(duckdb_parse):
    """dbt-score only checks the arguments the YAML lists: here they must be the macro's own, in order."""
    manifest = duckdb_parse[0]
    problems = []
    macros = [m for m in manifest["macros"].values() if m["package_name"] == "shopper_segments"]
    assert len(macros) > 50
    for macro in macros:
        signature = re.search(r"\{%-?\s*(?:macro|test)\s+\w+\s*\((.*?)\)\s*-?%\}", macro["macro_sql"], re.S)
        arguments = [part.split("=")[0].strip() for part in signature.group(1).split(",") if part.strip()]
        documented = [argument["name"] for argument in macro["arguments"]]
        if not macro["description"].strip():
            problems.append(f"{macro['name']}: no description")
        if documented != arguments:
            problems.append(f"{macro['name']}: arguments {arguments}, documented {documented}")
        problems += [f"{macro['name']}.{argument['name']}: no description"
                     for argument in macro["arguments"] if not (argument.get("description") or "").strip()]
    assert problems == []


def example_queries(manifest: dict) -> dict[str, list[str]]:
    return {
        node["name"]: re.findall(r"```sql\n(.*?)```", node["description"], re.S)
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and node["package_name"] == "shopper_segments"
    }


def test_the_example_queries_in_the_descriptions_run(real_warehouse):
    real_warehouse.segments("dbt", "--", "parse")
    examples = example_queries(json.loads((real_warehouse.target_dir / "manifest.json").read_text()))
    assert all(examples[mart] for mart in PUBLIC_MARTS), {mart: examples[mart] for mart in PUBLIC_MARTS}
    for model, queries in examples.items():
        for query in queries:
            assert len(real_warehouse.df(query)) > 0, f"the example query of {model} returns nothing:\n{query}"


# ---------------------------------------------------------------------------------------------- item 5

KPI_METRICS = ["shoppers", "buyers", "conversion_rate", "revenue", "revenue_share", "average_order_value"]


def test_the_semantic_layer_parses_with_its_time_spine(duckdb_parse):
    manifest = duckdb_parse[0]
    metrics = {metric["name"] for metric in manifest["metrics"].values()}
    assert set(KPI_METRICS) <= metrics
    (semantic_model,) = manifest["semantic_models"].values()
    dimensions = {dimension["name"] for dimension in semantic_model["dimensions"]}
    assert {"segment_name", "segment_id", "model_version", "activity_date"} <= dimensions
    spine = manifest["nodes"]["model.shopper_segments.time_spine_daily"]
    assert spine["time_spine"]["standard_granularity_column"] == "date_day"


def mf_query(warehouse, workdir: Path, *args: str) -> list[dict]:
    """`mf query ... --csv` on the warehouse. mf reads <project>/target/semantic_manifest.json only, so
    it runs in a scratch folder linking the project's files, with the warehouse's semantic manifest."""
    scratch = workdir / "mf_project"
    if not scratch.exists():
        (scratch / "target").mkdir(parents=True)
        for entry in PROJECT.iterdir():
            if entry.name not in ("target", "logs", ".git", ".venv"):
                (scratch / entry.name).symlink_to(entry)
        (scratch / "target" / "semantic_manifest.json").write_bytes(
            (warehouse.target_dir / "semantic_manifest.json").read_bytes())
    output = workdir / f"mf_{len(list(workdir.glob('mf_*.csv')))}.csv"
    result = subprocess.run([str(BIN / "mf"), "query", *args, "--csv", str(output)],
                            cwd=scratch, env=warehouse.env(), capture_output=True, text=True)
    assert result.returncode == 0 and output.exists(), (
        f"mf query {shlex.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-2000:]}")
    with output.open() as handle:
        return list(csv.DictReader(handle))


def test_mf_query_answers_the_segment_kpis_as_segment_summary(real_warehouse, tmp_path):
    rows = mf_query(real_warehouse, tmp_path, "--metrics", ",".join(KPI_METRICS),
                    "--group-by", "shopper_day__segment_name,shopper_day__model_version")
    by_segment = {row["shopper_day__segment_name"]: row for row in rows}
    summary = real_warehouse.df(
        "select segment_name, model_version, users, buyers, conversion_rate, revenue, revenue_share, "
        "avg_order_value from segment_summary where users > 0")
    assert set(by_segment) == set(summary.segment_name) and len(summary) > 1
    for expected in summary.itertuples():
        row = by_segment[expected.segment_name]
        assert int(row["shopper_day__model_version"]) == expected.model_version
        assert int(row["shoppers"]) == expected.users
        assert int(row["buyers"]) == expected.buyers
        for metric, column in [("conversion_rate", "conversion_rate"), ("revenue", "revenue"),
                               ("revenue_share", "revenue_share"), ("average_order_value", "avg_order_value")]:
            value, reference = row[metric], getattr(expected, column)
            if reference is None or (isinstance(reference, float) and math.isnan(reference)):
                assert value in ("", "None", "nan"), (expected.segment_name, metric, value)
            else:
                assert float(value) == pytest.approx(float(reference), rel=1e-9), (expected.segment_name, metric)

    daily = mf_query(real_warehouse, tmp_path, "--metrics", "revenue,buyers", "--group-by", "metric_time__day")
    assert len(daily) >= 1
    assert sum(float(row["revenue"] or 0) for row in daily) == pytest.approx(float(summary.revenue.sum()))


# ---------------------------------------------------------------------------------------------- item 6


def kubernetes_documents() -> dict[str, dict]:
    """The Kubernetes resources of deploy/kubernetes (kustomization.yaml is kustomize's, not one)."""
    documents = {}
    for path in sorted(KUBERNETES.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text()):
            documents[f"{path.name}:{document['kind']}/{document['metadata']['name']}"] = document
    return documents


def cronjobs() -> dict[str, dict]:
    return {document["metadata"]["name"]: document
            for document in kubernetes_documents().values() if document["kind"] == "CronJob"}


def dockerfile_instruction(name: str) -> str:
    lines = [line for line in (PROJECT / "Dockerfile").read_text().splitlines() if line.startswith(name + " ")]
    assert len(lines) == 1, name
    return lines[0][len(name) + 1:].strip()


def test_kubernetes_cronjobs_run_the_daily_job_and_the_monthly_retraining():
    jobs = cronjobs()
    assert set(jobs) == {"shopper-segments-daily", "shopper-segments-retrain"}
    entrypoint = json.loads(dockerfile_instruction("ENTRYPOINT"))
    assert entrypoint == ["segments"]
    image_name = re.search(r"^IMAGE \?= (\S+)$", (PROJECT / "Makefile").read_text(), re.M).group(1)
    version = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]["version"]
    parsed = {}
    for name, job in jobs.items():
        assert job["apiVersion"] == "batch/v1"
        spec = job["spec"]
        assert spec["concurrencyPolicy"] == "Forbid" and spec["timeZone"] == "Etc/UTC"
        pod = spec["jobTemplate"]["spec"]["template"]["spec"]
        assert pod["restartPolicy"] == "Never"
        (container,) = pod["containers"]
        # The image's entrypoint stays: `command` would replace `segments`, `args` are its arguments.
        assert "command" not in container
        repository, tag = container["image"].rsplit(":", 1)
        assert repository.rsplit("/", 1)[-1] == image_name and tag == version
        parsed[name] = (spec["schedule"], cli.build_parser().parse_args(container["args"]))
    daily_schedule, daily = parsed["shopper-segments-daily"]
    monthly_schedule, monthly = parsed["shopper-segments-retrain"]
    assert daily.command == "run" and not daily.retrain
    assert monthly.command == "run" and monthly.retrain
    # Daily at 03:00, monthly on the 1st at 05:00: never the same hour, so the jobs do not overlap.
    assert daily_schedule.split()[2:] == ["*", "*", "*"] and monthly_schedule.split()[2:] == ["1", "*", "*"]
    assert daily_schedule.split()[1] != monthly_schedule.split()[1]


def test_kubernetes_jobs_run_as_the_image_user_without_privileges():
    uid, gid = (int(part) for part in dockerfile_instruction("USER").split(":"))
    assert uid != 0 and gid != 0
    for name, job in cronjobs().items():
        pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True, name
        assert (context["runAsUser"], context["runAsGroup"], context["fsGroup"]) == (uid, gid, gid), name
        for container in pod["containers"]:
            own = container["securityContext"]
            assert own["allowPrivilegeEscalation"] is False, name
            assert own["readOnlyRootFilesystem"] is True, name
            assert own["capabilities"]["drop"] == ["ALL"], name
            assert "runAsUser" not in own or own["runAsUser"] == uid
            # With a read-only root filesystem, what the pipeline writes must be a volume.
            mounted = {mount["mountPath"] for mount in container["volumeMounts"]}
            assert {"/data/warehouse", "/tmp"} <= mounted, name


SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|KEY", re.IGNORECASE)


def test_kubernetes_secrets_come_from_a_secret_and_settings_are_ones_the_code_reads():
    documents = kubernetes_documents()
    config_maps = {d["metadata"]["name"]: d for d in documents.values() if d["kind"] == "ConfigMap"}
    # The variables the project reads: the CLI's code, the dbt profile, project, models and macros.
    sources = [*(PROJECT / "src").rglob("*.py"), *(PROJECT / "models").rglob("*.yml"),
               *(PROJECT / "macros").rglob("*.sql"), PROJECT / "profiles" / "profiles.yml", PROJECT / "dbt_project.yml"]
    code = set(re.findall(r"SEGMENTS_[A-Z0-9_]*[A-Z0-9]", "\n".join(path.read_text() for path in sources)))
    for name, config_map in config_maps.items():
        for key in config_map["data"]:
            assert not SECRET_NAME.search(key), f"ConfigMap {name} holds a secret-looking {key}"
            assert key in code, f"ConfigMap {name}: nothing reads {key}"
    for name, job in cronjobs().items():
        (container,) = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        for source in container.get("envFrom", []):
            assert "secretRef" in source or source["configMapRef"]["name"] in config_maps, name
        for variable in container.get("env", []):
            assert variable["name"] in code, f"{name}: nothing reads {variable['name']}"
            if SECRET_NAME.search(variable["name"]):
                assert "value" not in variable, f"{name}: {variable['name']} written inline"
                assert "secretKeyRef" in variable["valueFrom"], f"{name}: {variable['name']} not from a Secret"


def test_kubernetes_manifests_are_listed_and_documented():
    files = sorted(path.name for path in KUBERNETES.glob("*.yaml") if path.name != "kustomization.yaml")
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == files
    deployment = (PROJECT / "docs" / "deployment.md").read_text()
    assert "deploy/kubernetes" in deployment
    for file in [*files, "kustomization.yaml"]:
        assert f"`{file}`" in deployment, file
    service_accounts = {d["metadata"]["name"] for d in kubernetes_documents().values() if d["kind"] == "ServiceAccount"}
    for name, job in cronjobs().items():
        assert job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["serviceAccountName"] in service_accounts, name
