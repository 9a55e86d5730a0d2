"""RFC 4180 quoting and mixed line ends (issue 12, item 3): landed untouched, split quote-aware by
staging (macros/rules/event_rules.sql, raw_field), giving the same fields and rules as the clean file."""

from __future__ import annotations

import csv
import io

import pandas as pd

from conftest import OCTOBER_HEAD, Warehouse

FIELDS = ["line_number", "reject_reason", "field_count", "event_time_text", "event_type", "product_id_text",
          "category_id_text", "category_code_text", "brand_text", "price_text", "user_id_text", "user_session"]
VALID = "2019-10-01 00:00:00 UTC,view,44600062,2103807459595387724,,shiseido,35.79,541312140,72d76fde-8bb3"


def quoted_all(text: str) -> str:
    """The file as exporters write it with every field quoted (QUOTE_ALL), line ends kept as LF."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
    for line in text.split("\n"):
        writer.writerow(line.split(",") if line else [])
    return out.getvalue()[: -1 if not text.endswith("\n") else None]


def test_quoted_and_mixed_line_end_files_give_the_clean_files_rows(tmp_path):
    text = OCTOBER_HEAD.read_text(encoding="utf-8")
    lines = text.split("\n")
    lake = tmp_path / "lake"
    lake.mkdir()
    (lake / "clean.csv").write_text(text)
    (lake / "quoted.csv").write_text(quoted_all(text))
    (lake / "mixed.csv").write_bytes((lines[0] + "\r\n" + "\n".join(lines[1:])).encode())
    hand = [  # quoted commas and quotes inside fields, partial quoting, broken quoting
        VALID.replace(",shiseido,", ',"shiseido",'),                               # 1: only the brand quoted
        VALID.replace(",,shiseido,", ',"a.b,c","shi""seido",'),                   # 2: comma in category, quote in brand
        VALID.replace(",shiseido,", ',"procter, gamble",'),                       # 3: a comma inside the brand
        VALID.replace(",shiseido,", ',"unclosed,'),                                # 4: a quote that opens no field
        VALID.replace(",shiseido,", ',sh"iseido,'),                                # 5: a bare quote, as before
        '"' + VALID.replace(",", '","').replace('"35.79"', '"35.79","extra"') + '"',  # 6: ten quoted fields
    ]
    (lake / "hand.csv").write_text("\n".join(hand) + "\n")
    warehouse = Warehouse(tmp_path / "wh")
    warehouse.segments("load", "--events", str(lake))
    warehouse.segments("dbt", "--", "build", "--select", "+stg_event_loads", "--exclude-resource-type", "test",
                       "unit_test")

    def rows(file_name: str):
        frame = warehouse.df(f"select {', '.join(FIELDS)} from main_private.base_event_lines where source_file = '{file_name}' "
                             "order by line_number")
        valid = frame[frame.reject_reason.isna()]
        return valid.values.tolist(), frame[["line_number", "reject_reason"]].values.tolist()

    clean = rows("clean.csv")
    assert len(clean[0]) == 17434
    assert rows("quoted.csv") == clean
    assert rows("mixed.csv") == clean
    # The raw lines stay as delivered: a rejected quoted line shows its quotes.
    raw = warehouse.scalar("select raw_line from stg_events_rejected where source_file = 'quoted.csv'")
    assert raw == quoted_all(lines[-1])

    hand_rows = warehouse.df(f"select {', '.join(FIELDS)} from main_private.base_event_lines where source_file = 'hand.csv' "
                             "order by line_number").set_index("line_number")
    assert hand_rows.loc[1, "brand_text"] == "shiseido" and pd.isna(hand_rows.loc[1, "reject_reason"])
    assert hand_rows.loc[2, ["field_count", "category_code_text", "brand_text", "reject_reason"]].tolist() == [
        9, "a.b,c", 'shi"seido', "invalid_category_code"]
    assert hand_rows.loc[3, ["field_count", "brand_text", "price_text", "reject_reason"]].tolist() == [
        9, "procter, gamble", "35.79", "invalid_brand"]  # the brand rule: no comma (docs/data_quality.md)
    # Quotes that do not form RFC 4180 fields are text, split on commas as before quoting was read.
    assert hand_rows.loc[4, "brand_text"] == '"unclosed' and pd.isna(hand_rows.loc[4, "reject_reason"])
    assert hand_rows.loc[5, "brand_text"] == 'sh"iseido' and pd.isna(hand_rows.loc[5, "reject_reason"])
    assert hand_rows.loc[6, ["field_count", "reject_reason"]].tolist() == [10, "wrong_field_count"]
    audit = warehouse.df("select file_name, rows_accepted, rows_duplicate, rows_rejected from stg_event_loads "
                         "order by load_id").set_index("file_name")
    assert audit.loc["quoted.csv"].tolist() == [0, 17434, 1]  # the same events as clean.csv: all duplicates
