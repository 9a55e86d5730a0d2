"""A scan of the dbt SQL for DuckDB-only syntax: what would break on PostgreSQL or Redshift.

Models, dbt tests and macros are read as text; DuckDB-only code is allowed only where it can run
on DuckDB alone: in `duckdb__*` dispatch implementations and in `{% if target.type == 'duckdb' %}`
branches. Jinja tags and comments, SQL comments and string literals are left out of the scan.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# pattern -> why it does not port (and what to use instead). Case-insensitive.
DUCKDB_ONLY: dict[str, str] = {
    r"\bregexp_full_match\s*\(": "DuckDB only: use regex_full_match()",
    r"\bregexp_matches\s*\(": "DuckDB only (PostgreSQL's differs): use regex_full_match() or a dispatch macro",
    r"\bregexp_extract(_all)?\s*\(": "DuckDB only: Redshift has regexp_substr, PostgreSQL substring/regexp_match",
    r"\b(starts|ends)_with\s*\(": "not in Redshift: use like 'x%'",
    r"\bstr(f|p)time\s*\(": "DuckDB only: use to_char / cast or a dispatch macro",
    r"\bepoch(_ms|_us|_ns)?\s*\(": "DuckDB only: use dbt.datediff",
    r"\bdate_(diff|sub|add)\s*\(": "DuckDB only: use dbt.datediff / dbt.dateadd",
    r"\bdatediff\s*\(": "not in PostgreSQL: use dbt.datediff",
    r"\blist(_\w+)?\s*\(": "DuckDB lists: not in PostgreSQL/Redshift",
    r"\b(struct_pack|struct_extract|list_value|map_from_entries)\s*\(": "DuckDB nested types",
    r"\b(string_split|str_split|split|string_split_regex)\s*\(": "DuckDB only: use split_part",
    r"\bstring_agg\s*\(": "not in Redshift: use listagg in a dispatch macro",
    r"\barray_agg\s*\(": "not in Redshift",
    r"\b(unnest|generate_series|range)\s*\(": "not on Redshift compute nodes",
    r"\blen\s*\(": "DuckDB only: use length",
    r"\b(hash|md5_number)\s*\(": "DuckDB only",
    r"\b(arg_max|arg_min|max_by|min_by|argmax|argmin)\s*\(": "DuckDB only: use row_number()",
    r"\bmode\s*\(": "not in Redshift (and an ordered-set aggregate in PostgreSQL)",
    r"\bmedian\s*\(": "not in PostgreSQL: use percentile_cont within group",
    r"\b(quantile|quantile_cont|quantile_disc|approx_quantile|approx_count_distinct)\s*\(": "DuckDB only",
    r"\b(count_if|countif|ifnull|iff|if)\s*\(": "DuckDB only: use sum(case ...) / coalesce / case",
    r"\btry_cast\s*\(": "not in PostgreSQL/Redshift",
    r"\bfilter\s*\(\s*where\b": "aggregate FILTER is not in Redshift: use case inside the aggregate",
    r"\bqualify\b": "not in PostgreSQL: filter a window in a subquery",
    r"\b(group|order)\s+by\s+all\b": "DuckDB only",
    r"\*\s*(exclude|replace)\s*\(": "DuckDB star modifiers",
    r"\bcolumns\s*\(": "DuckDB COLUMNS expression",
    r"\bunion\s+(all\s+)?by\s+name\b": "DuckDB only",
    r"\b(pivot|unpivot)\b": "DuckDB only",
    r"\basof\s+(left\s+)?join\b|\bpositional\s+join\b": "DuckDB joins",
    r"\busing\s+sample\b|\btablesample\b": "DuckDB sampling",
    r"\bread_(csv|csv_auto|parquet|json|json_auto|text)\s*\(": "DuckDB table functions",
    r"->>?": "JSON/lambda arrows: not in Redshift",
    r"\b(hugeint|uhugeint|ubigint|uinteger|usmallint|utinyint|tinyint)\b": "DuckDB integer types",
    r"\bdouble\b(?!\s+precision)": "use type_double() (`double precision`)",
    r"\bcount\s*\(\s*\)": "count() without * is DuckDB only",
    r"\bsplit_part\s*\([^()]*,\s*-\s*\d+\s*\)": "negative split_part index is not in Redshift",
    r"\[\s*\d+\s*\]": "list indexing",
}


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    text: str
    why: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.text!r} ({self.why})"


_TAG = re.compile(r"\{%-?\s*(\w+)(.*?)-?%\}", re.S)
_DUCKDB_GUARD = re.compile(r"target\.type\s*==\s*['\"]duckdb['\"]")


def _blank(text: str, start: int, end: int) -> str:
    """Replace text[start:end] by spaces, keeping newlines (line numbers stay right)."""
    return text[:start] + re.sub(r"[^\n]", " ", text[start:end]) + text[end:]


def strip_duckdb_only_code(text: str) -> str:
    """Blank out `duckdb__*` macros and `{% if target.type == 'duckdb' %}` branches."""
    # duckdb__ dispatch implementations: from the macro tag to its endmacro.
    for match in reversed(list(re.finditer(r"\{%-?\s*macro\s+duckdb__\w+.*?\{%-?\s*endmacro\s*-?%\}", text, re.S))):
        text = _blank(text, match.start(), match.end())
    # if-branches guarded by target.type == 'duckdb': up to the matching else/elif/endif.
    while True:
        tags = list(_TAG.finditer(text))
        guard = next((i for i, t in enumerate(tags) if t.group(1) == "if" and _DUCKDB_GUARD.search(t.group(2))), None)
        if guard is None:
            return text
        depth, end = 0, None
        for tag in tags[guard + 1:]:
            if tag.group(1) == "if":
                depth += 1
            elif tag.group(1) == "endif":
                if depth == 0:
                    end = tag.start()
                    break
                depth -= 1
            elif tag.group(1) in ("else", "elif") and depth == 0:
                end = tag.start()
                break
        if end is None:
            raise ValueError("unbalanced {% if %} in a DuckDB-guarded block")
        # Blank the guard tag too, so it is not found again.
        text = _blank(text, tags[guard].start(), end)


def sql_text(text: str) -> str:
    """The SQL a human wrote: without DuckDB-only code, Jinja, comments and string literals."""
    text = re.sub(r"\{#.*?#\}", lambda m: re.sub(r"[^\n]", " ", m.group()), text, flags=re.S)
    text = strip_duckdb_only_code(text)
    for pattern in (r"\{%.*?%\}", r"\{\{.*?\}\}", r"--[^\n]*", r"'(?:[^']|'')*'"):
        text = re.sub(pattern, lambda m: re.sub(r"[^\n]", " ", m.group()), text, flags=re.S)
    return text


def scan_text(text: str, path: str) -> list[Finding]:
    findings = []
    cleaned = sql_text(text)
    for pattern, why in DUCKDB_ONLY.items():
        for match in re.finditer(pattern, cleaned, re.I):
            line = cleaned.count("\n", 0, match.start()) + 1
            findings.append(Finding(path, line, text.splitlines()[line - 1].strip(), why))
    return findings


def scan_project(project: Path) -> list[Finding]:
    """Every finding in models/, macros/ and tests/dbt/ of the dbt project."""
    findings = []
    for folder in ("models", "macros", "tests/dbt"):
        for path in sorted((project / folder).rglob("*.sql")):
            findings += scan_text(path.read_text(), str(path.relative_to(project)))
    return findings
