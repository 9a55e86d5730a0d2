"""Sum the `segments` call log of a test run (SEGMENTS_TEST_CALL_LOG, see cli_runner.py) by test and
by command: `python tests/pytest/call_times.py calls.jsonl`."""

from __future__ import annotations

import json
import sys
from collections import defaultdict


def main(path: str) -> None:
    calls = [json.loads(line) for line in open(path)]
    by_test, by_command = defaultdict(lambda: [0, 0.0]), defaultdict(lambda: [0, 0.0])
    for call in calls:
        test = call["test"].rsplit(" (", 1)[0]
        command = " ".join(call["args"][:1] + [a for a in call["args"][1:3] if a.startswith("-")])
        for table, key in ((by_test, test), (by_command, command)):
            table[key][0] += 1
            table[key][1] += call["seconds"]
    total = sum(call["seconds"] for call in calls)
    print(f"{len(calls)} calls, {total:.0f} s in all")
    for title, table in (("by command", by_command), ("by test", by_test)):
        print(f"\n{title}:")
        for key, (count, seconds) in sorted(table.items(), key=lambda kv: -kv[1][1])[:40]:
            print(f"{seconds:8.1f} s {count:4d} calls  {key}")


if __name__ == "__main__":
    main(sys.argv[1])
