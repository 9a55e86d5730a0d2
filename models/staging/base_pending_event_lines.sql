{#- The lines of pending files, split and checked once per run (base_event_lines is a view: each of the
    three staging models reading it split and checked every pending line again, half the build time at
    the real store's shape, docs/benchmarks.md). The staging models read this table for the files it
    covers (pending_event_lines, macros/rules/load_batches.sql) when it was built in the same
    invocation, and the view otherwise, so a copy left by an interrupted run is never read.
    The raw line is kept for rejected lines only (the rejected table shows it); valid lines are
    carried by their fields. Privacy (docs/gdpr.md): a working copy, emptied at the end of every dbt
    invocation (on-run-end: empty_pending_event_lines). -#}
{{ config(materialized='table') }}

select {{ pending_line_columns() }}
from {{ ref('base_event_lines') }}
-- Pending for the staging models: the files not audited yet, or every file when they are rebuilt.
where load_id in ({{ pending_load_ids(incremental=not flags.FULL_REFRESH) }})
