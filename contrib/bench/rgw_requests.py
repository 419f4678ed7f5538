"""The requests Ceph's RADOS Gateway logged (beast's access lines), counted by method.

    python3 rgw_requests.py LOG START [END]   prints "METHOD COUNT" lines for the bytes START..END

Used by bench_expire.sh and bench_archive.sh (imported there) to tell what a run asked of the
gateway. The gateway writes its log asynchronously: wait a few seconds after the run.
"""

import re
import sys

_LINE = re.compile(r'beast: \S+: \S+ - \S+ \[[^\]]*\] "(GET|PUT|POST|DELETE|HEAD) ')


def count(text):
    """{method: count} of the access lines in text."""
    by = {}
    for m in _LINE.finditer(text):
        by[m.group(1)] = by.get(m.group(1), 0) + 1
    return by


def read(path, start=0, end=None):
    """The log's text from byte start to byte end (None: to its end)."""
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read() if end is None else f.read(max(end - start, 0))
    return data.decode(errors="replace")


if __name__ == "__main__":
    by = count(read(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else None))
    for k in sorted(by):
        print(k, by[k])
