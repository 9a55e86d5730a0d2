"""GDPR by design, on real builds: erasure reaches every relation, retention purges, pseudonyms are
stable for a key and differ across keys."""

from __future__ import annotations

import shutil
import stat

import pandas as pd
import pytest

from conftest import OCTOBER_HEAD, Warehouse
from shopper_segments.ingest import privacy
from shopper_segments.generate import generate_events

PROJECT_SCHEMAS = ("main", "main_private", "raw")


def october_min_user_id() -> int:
    """The smallest user id of the real October head (the `real` shopper the erasure test erases)."""
    lines = [line.split(",") for line in OCTOBER_HEAD.read_text().splitlines()[1:]]
    return min(int(fields[7]) for fields in lines if len(fields) == 9)


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """Generated daily files with defects (so erased shoppers also have rejected lines) + the real heads."""
    folder = tmp_path_factory.mktemp("gdpr_lake")
    generated = generate_events(folder / "generated", users=800, start="2019-11-27", days=4, seed=21,
                                split="day", gzip=False, progress=False, defect_rate=0.01, world="planted")
    lake = folder / "lake"
    lake.mkdir()
    for path in [*generated.files[:3], OCTOBER_HEAD]:
        shutil.copy(path, lake / path.name)
    # Malformed lines of the shopper the erasure test erases from the real sample: a user field with a
    # space (invalid_user_id), a truncated line and a line with an extra field (wrong_field_count).
    real = october_min_user_id()
    (lake / "malformed.csv").write_text(
        f"2019-11-28 10:00:00 UTC,view,1,2,,,1.00, {real},s-malformed\n"
        f"2019-11-28 10:00:01 UTC,view,1,2,,,1.00,{real}\n"
        f"2019-11-28 10:00:02 UTC,view,1,2,,,1.00,{real},s-malformed,extra\n"
    )
    return lake, generated.files[3]


def rows_mentioning(warehouse: Warehouse, user_ids: list[int]) -> dict[str, int]:
    """For every relation of the project's schemas (from the catalogue), how many rows mention one of
    the ids: a numeric column equal to it, or a text column holding it as a digit run (leading zeros
    and any separator included)."""
    found = {}
    with warehouse.connect() as con:
        columns = con.sql(
            f"""select table_schema, table_name, column_name, data_type from information_schema.columns
            where table_schema in {PROJECT_SCHEMAS}"""
        ).fetchall()
        by_relation: dict[str, list[tuple[str, str]]] = {}
        for schema, table, column, kind in columns:
            by_relation.setdefault(f'{schema}."{table}"', []).append((column, kind))
        for relation, cols in by_relation.items():
            checks = []
            for column, kind in cols:
                name = f'"{column}"'
                if kind in ("BIGINT", "INTEGER", "HUGEINT", "UBIGINT"):
                    checks.append(f"{name} in ({', '.join(map(str, user_ids))})")
                elif kind == "VARCHAR":
                    for uid in user_ids:
                        checks.append(f"regexp_matches({name}, '(^|[^0-9])0*{uid}([^0-9]|$)')")
            if checks:
                found[relation] = con.sql(f"select count(*) from {relation} where {' or '.join(checks)}").fetchall()[0][0]
    return found


def test_erased_shoppers_are_absent_from_every_relation_after_a_build(tmp_path, lake):
    folder, late_file = lake
    warehouse = Warehouse(tmp_path / "wh")
    warehouse.segments("run", "--events", str(folder))
    # Three shoppers: one with rejected lines, one segmented, one from the real sample.
    with_rejects = warehouse.scalar(
        "select cast(user_field as bigint) from stg_events_rejected where reject_reason = 'negative_price' limit 1"
    )
    scored = warehouse.scalar("select user_id from user_segments where segment_status = 'scored' "
                              f"and user_id <> {with_rejects} order by user_id limit 1")
    real = warehouse.scalar("select user_id from stg_events where source_file = '2019-Oct-head.csv' "
                            "order by user_id limit 1")
    erased = [with_rejects, scored, real]
    assert real == october_min_user_id()
    before = rows_mentioning(warehouse, erased)
    assert sum(before.values()) > 0 and before['main."stg_events_rejected"'] > 0
    assert before['main."user_segments"'] > 0 and before['main."int_user_features"'] > 0
    rejected = warehouse.df(f"select reject_reason from stg_events_rejected where raw_line like '%{real}%'")
    assert sorted(rejected.reject_reason) == ["invalid_user_id", "wrong_field_count", "wrong_field_count"]
    assert all(str(uid).encode() in warehouse.path.read_bytes() for uid in erased)

    for number, user_id in enumerate(erased, start=1):
        warehouse.segments("erase", "--request-id", f"DSR-{number}", "--user-id", str(user_id))
    # A request id names one shopper: the same request again is a no-op, another shopper is refused.
    kept = warehouse.scalar(f"select min(user_id) from user_features where user_id not in {tuple(erased)}")
    reused = warehouse.segments("erase", "--request-id", "DSR-1", "--user-id", str(kept), check=False)
    assert reused.returncode != 0 and "already recorded for another shopper" in reused.stderr
    again = warehouse.segments("erase", "--request-id", "DSR-1", "--user-id", str(with_rejects))
    assert "was already recorded" in again.stdout

    shutil.copy(late_file, folder / late_file.name)  # a file that arrives later still holds them
    late = late_file.read_text()
    assert any(f",{uid}," in late for uid in erased[:2])
    # ...and one with the real shopper's id written with a leading zero (it passes the user-id rule).
    (folder / "late-zeros.csv").write_text(f"2019-11-29 08:00:00 UTC,cart,7,8,,,2.50,0{real},s-zeros\n")
    warehouse.segments("run", "--events", str(folder))

    after = rows_mentioning(warehouse, erased)
    assert len(after) >= 10  # every table and view of main, main_private and raw was searched
    assert {relation: n for relation, n in after.items() if n} == {}
    # Nothing erased is left in the bytes of the database file either (it was rewritten).
    leftovers = [uid for uid in erased if str(uid).encode() in warehouse.path.read_bytes()]
    assert leftovers == []
    assert warehouse.scalar(f"select count(*) from user_features where user_id = {kept}") == 1
    log = warehouse.df("select * from erasure_log order by request_id")
    assert list(log.request_id) == ["DSR-1", "DSR-2", "DSR-3"] and log.applied_at.notna().all()
    assert set(log.columns) == {"request_id", "requested_at", "applied_at"}  # no personal data
    audit = warehouse.df("select file_name, rows_erased from stg_event_loads")
    erased_by_file = dict(zip(audit.file_name, audit.rows_erased))
    assert erased_by_file[late_file.name] > 0 and erased_by_file["late-zeros.csv"] == 1
    # The model's training data is user_features: refitting now cannot see them.
    warehouse.segments("run", "--events", str(folder), "--retrain")
    assert {relation: n for relation, n in rows_mentioning(warehouse, erased).items() if n} == {}


def test_retention_purges_old_events_everywhere_and_equals_a_build_of_the_window(tmp_path, lake):
    folder, _ = lake
    generated_only = tmp_path / "lake"
    generated_only.mkdir()
    for path in folder.glob("2019-11-*.csv"):
        shutil.copy(path, generated_only / path.name)

    kept = Warehouse(tmp_path / "kept")
    kept.segments("run", "--events", str(generated_only))
    end = kept.scalar("select max(event_time) from stg_events")
    start = kept.scalar("select min(event_time) from stg_events")
    assert (end - start).days >= 2

    # The same warehouse, now with a one-day window: everything older than end - 1 day goes (most of
    # the history: more than one run may purge without the explicit flag).
    vars_ = "{retention_days: 1, retention_allow_large_purge: true}"
    kept.segments("dbt", "--", "build", "--vars", vars_)
    cutoff = end - pd.Timedelta(days=1)
    assert kept.scalar("select min(event_time) from stg_events") >= cutoff
    assert kept.scalar("select min(session_start) from int_sessions") >= cutoff
    assert kept.scalar("select min(first_event_at) from user_features") >= cutoff
    assert kept.scalar("select count(*) from user_segments where user_id not in "
                       "(select user_id from user_features)") == 0

    # A warehouse that only ever saw the window computes the same features.
    fresh = Warehouse(tmp_path / "fresh")
    fresh.segments("load", "--events", str(generated_only))
    fresh.segments("dbt", "--", "build", "--vars", vars_)
    key = ["user_id"]
    left = kept.df("select * exclude (last_load_id, computed_at) from user_features").sort_values(key).reset_index(drop=True)
    right = fresh.df("select * exclude (last_load_id, computed_at) from user_features").sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(left, right, check_exact=False, rtol=1e-9, atol=1e-9)


KEY_ONE, KEY_TWO = "first-key-4f1c9a7e2b", "second-key-8d3e0b5c6a"
# Staging to features: what the comparisons of pseudonyms need (no fit).
STAGING_TO_FEATURES = ("--select", "+user_features", "+stg_event_loads")


def pseudonymised_build(workdir, key: str, *dbt_args: str) -> Warehouse:
    warehouse = Warehouse(workdir)
    warehouse.segments("run", "--events", str(OCTOBER_HEAD), "--", "--vars", "{pseudonymise_user_ids: true}",
                       *dbt_args, SEGMENTS_PSEUDONYMISATION_KEY=key)
    return warehouse


@pytest.fixture(scope="module")
def features_with_key_one(tmp_path_factory) -> Warehouse:
    """The real head pseudonymised with KEY_ONE, staging to features: read by the pseudonym test,
    copied by the rotation test (which changes it)."""
    return pseudonymised_build(tmp_path_factory.mktemp("key_one_features"), KEY_ONE, *STAGING_TO_FEATURES)


def test_pseudonyms_are_stable_for_a_key_and_differ_across_keys(tmp_path, features_with_key_one):
    first = pseudonymised_build(tmp_path / "first", KEY_ONE)
    # The comparisons need user_features only (the leak scan below runs on the full build `first`).
    again = features_with_key_one
    other = pseudonymised_build(tmp_path / "other", KEY_TWO, *STAGING_TO_FEATURES)
    query = "select user_id from user_features order by user_id"
    ids_first, ids_again, ids_other = (w.df(query).user_id for w in (first, again, other))
    assert len(ids_first) > 4000 and ids_first.is_unique
    assert list(ids_first) == list(ids_again)
    assert not set(ids_first) & set(ids_other)

    lines = [line.split(",") for line in OCTOBER_HEAD.read_text().splitlines()[1:] if line.count(",") == 8]
    raw_ids = sorted({int(fields[7]) for fields in lines})
    # No raw user id is left outside the raw layer (the landing tables and the private view that splits
    # their lines, docs/gdpr.md)...
    raw_layer = {'main_private."base_event_lines"'}
    leaks = {r: n for r, n in rows_mentioning(first, raw_ids[:50]).items()
             if n and not r.startswith("raw.") and r not in raw_layer}
    assert leaks == {}
    # ...and the documented join path re-identifies for those who hold the key.
    assert sorted(privacy.pseudonym(KEY_ONE, uid) for uid in raw_ids) == sorted(ids_first)
    sessions = first.df("select distinct user_session from int_sessions").user_session
    raw_sessions = {fields[8] for fields in lines}
    assert not set(sessions) & raw_sessions and sessions.str.fullmatch("[0-9a-f]{64}").all()


def test_privacy_settings_are_the_warehouses_and_rotation_rewrites_every_layer(tmp_path, features_with_key_one):
    warehouse = Warehouse(tmp_path / "wh")
    shutil.copytree(features_with_key_one.workdir, warehouse.workdir)  # file modes kept (copy2)
    lines = [line.split(",") for line in OCTOBER_HEAD.read_text().splitlines()[1:] if line.count(",") == 8]
    raw_ids = sorted({int(fields[7]) for fields in lines})
    shoppers = warehouse.scalar("select count(*) from user_features")

    # The key lives outside the warehouse file: in the privacy file, readable by its owner only.
    assert KEY_ONE.encode() not in warehouse.path.read_bytes()
    assert not [r for r in warehouse.relations() if "pseudonymisation_key" in r]
    privacy_file = warehouse.path.with_name("warehouse.privacy.duckdb")
    assert stat.S_IMODE(privacy_file.stat().st_mode) == 0o600
    # Raw ids are not in the schema BI reads: the view splitting raw lines has its own schema.
    assert "main_private.base_event_lines" in warehouse.relations()
    assert not [r for r in warehouse.relations() if r.startswith("main.") and "base_event_lines" in r]

    state = warehouse.digest()
    refused = warehouse.segments("run", "--events", str(OCTOBER_HEAD), check=False,
                                 SEGMENTS_PSEUDONYMISATION_KEY=KEY_ONE)
    assert refused.returncode != 0
    assert "built with pseudonymise_user_ids: true and this run sets it to false" in refused.stdout
    assert warehouse.digest() == state  # nothing written
    leaks = {r: n for r, n in rows_mentioning(warehouse, raw_ids[:50]).items()
             if n and not r.startswith("raw.") and r != 'main_private."base_event_lines"'}
    assert leaks == {}

    other_key = warehouse.segments("run", "--events", str(OCTOBER_HEAD), "--", "--vars",
                                   "{pseudonymise_user_ids: true}", check=False,
                                   SEGMENTS_PSEUDONYMISATION_KEY=KEY_TWO)
    assert other_key.returncode != 0 and "differs from the key the warehouse was built with" in other_key.stderr
    assert warehouse.digest() == state
    # The command the refusal recommends is the documented one, and it rotates every layer.
    assert "segments run --rotate-key -- --vars '{pseudonymise_user_ids: true}'" in other_key.stderr
    warehouse.segments("run", "--rotate-key", "--events", str(OCTOBER_HEAD), "--", "--vars",
                       "{pseudonymise_user_ids: true}", *STAGING_TO_FEATURES, SEGMENTS_PSEUDONYMISATION_KEY=KEY_TWO)
    expected = {privacy.pseudonym(KEY_TWO, uid) for uid in raw_ids}
    for relation in ("stg_events", "int_sessions", "user_features"):
        ids = set(warehouse.df(f"select distinct user_id from {relation}").user_id)
        assert ids <= expected, relation
    assert warehouse.scalar("select count(*) from user_features") == shoppers
    assert KEY_TWO.encode() not in warehouse.path.read_bytes()


def test_implausible_times_are_rejected_and_retention_never_wipes_the_history(tmp_path):
    generated = generate_events(tmp_path / "generated", users=150, start="2019-11-27", days=2, seed=5,
                                split="day", gzip=False, progress=False)
    lake = tmp_path / "lake"
    lake.mkdir()
    shutil.copy(generated.files[0], lake / generated.files[0].name)
    staging = ("--", "--select", "+stg_event_loads")
    warehouse = Warehouse(tmp_path / "wh")
    warehouse.segments("run", "--events", str(lake), *staging)
    history = "select count(*), max(event_time) from stg_events"
    stored, newest = warehouse.df(history).iloc[0]
    template = generated.files[0].read_text().splitlines()[-1]

    def line(event_time: str) -> str:
        return event_time + template[len("2019-11-27 00:00:00 UTC"):] + "\n"

    # An impossible year and a far-future date that matches the pattern: rejected, the history stays.
    (lake / "bad-dates.csv").write_text(line("9999-12-31 23:59:59 UTC") + line("2999-06-01 00:00:00 UTC"))
    warehouse.segments("run", "--events", str(lake), *staging)
    assert tuple(warehouse.df(history).iloc[0]) == (stored, newest)
    audit = warehouse.df("select * from stg_event_loads where file_name = 'bad-dates.csv'").iloc[0]
    assert audit.rejected_implausible_event_time == 2 and audit.rows_accepted == 0

    # A plausible time years after the data would purge the whole history: the run stops, nothing deleted.
    (lake / "wrong-year.csv").write_text(line("2025-06-01 00:00:00 UTC"))
    refused = warehouse.segments("run", "--events", str(lake), *staging, check=False)
    assert refused.returncode != 0 and "more than retention_max_purge_share (0.5)" in refused.stdout
    assert tuple(warehouse.df(history).iloc[0]) == (stored, newest)
    # With the explicit flag the purge goes ahead and says what it deletes.
    allowed = warehouse.segments("run", "--events", str(lake), *staging,
                                 "--vars", "{retention_allow_large_purge: true}")
    assert f"Retention purges {stored} of the {stored} events stored before this build" in allowed.stdout
    assert warehouse.scalar("select count(*) from stg_events") == 1

    # Events that arrive already outside the window are counted as expired, not as duplicates.
    late = generated.files[1]
    shutil.copy(late, lake / late.name)
    warehouse.segments("run", "--events", str(lake), *staging)
    audit = warehouse.df(f"select * from stg_event_loads where file_name = '{late.name}'").iloc[0]
    assert audit.rows_expired == audit.rows_read - audit.rows_rejected > 0
    assert audit.rows_duplicate == 0 and audit.rows_accepted == 0
