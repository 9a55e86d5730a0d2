"""docs/architecture.md kept true: its package map lists every module of the package, and the
recipes' invariants hold (no warehouse needed: these read the project's files).

- every feature of seeds/segment_features.csv is a documented user_features column;
- every persona has traits, on features the model knows;
- every dbt Python model has an entry in FIT_TABLES (so `segments fit` writes it on PostgreSQL and
  Redshift) and a table in the `fitted` source (so SQL models can read it there).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import yaml

from conftest import PROJECT

PACKAGE = PROJECT / "src" / "shopper_segments"


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def yaml_models(path: Path) -> dict[str, dict]:
    return {model["name"]: model for model in yaml.safe_load(path.read_text()).get("models", [])}


def test_the_package_map_lists_every_module_and_only_existing_ones():
    text = (PROJECT / "docs" / "architecture.md").read_text()
    section = text.split("## Package map", 1)[1].split("\n## ", 1)[0]
    mapped = set(re.findall(r"^\| `([a-z_/]+\.py)` \|", section, flags=re.MULTILINE))
    actual = {str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py") if path.name != "__main__.py"}
    assert sorted(actual - mapped) == [], "modules missing from the package map of docs/architecture.md"
    assert sorted(mapped - actual) == [], "the package map of docs/architecture.md names modules that do not exist"


def test_every_model_feature_is_a_documented_user_features_column():
    columns = {column["name"] for column in
               yaml_models(PROJECT / "models" / "features" / "_features.yml")["user_features"]["columns"]}
    features = [row["feature_name"] for row in read_csv(PROJECT / "seeds" / "segment_features.csv")]
    assert features and sorted(set(features) - columns) == []


def test_every_persona_has_traits_on_known_features():
    personas = {row["persona_key"] for row in read_csv(PROJECT / "seeds" / "segment_personas.csv")}
    traits = read_csv(PROJECT / "seeds" / "segment_persona_traits.csv")
    features = {row["feature_name"] for row in read_csv(PROJECT / "seeds" / "segment_features.csv")}
    assert personas and sorted(personas - {row["persona_key"] for row in traits}) == []
    assert sorted({row["persona_key"] for row in traits} - personas) == []
    assert sorted({row["feature_name"] for row in traits} - features) == []


def test_every_python_model_is_written_by_segments_fit_and_is_a_fitted_source():
    from shopper_segments.model.fit import FIT_TABLES

    python_models = {path.stem for path in (PROJECT / "python_models").glob("*.py")}
    sources = yaml.safe_load((PROJECT / "models" / "segments" / "_fitted_sources.yml").read_text())["sources"]
    fitted = {table["name"] for source in sources if source["name"] == "fitted" for table in source["tables"]}
    assert python_models and sorted(python_models - set(FIT_TABLES)) == []
    assert sorted(python_models - fitted) == []
