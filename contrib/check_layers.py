#!/usr/bin/env python3
"""check_layers.py - the include rule of common/, checked.

common/ is layered; a layer may include its own headers and those of the layers below it, never
one above it, and nothing in common/ includes a program's header:

    core  <  storage  <  pipeline  <  pg  <  repo

Every include of a project header names its layer ("core/buf.h", "storage/s3/sign.h"); a bare
name is allowed only for a header next to the including file in a program folder ("push.h").

Every module of common/ (a .c file) has its unit-test file tests/unit/test_<module>.c, or is named
in TESTED_BY below with the test that covers it (a driver that needs a live peer is tested against
one by the integration suite).
The README's exit code table lists every class of common/core/error.h's WV_ERR_MAP.
Exit 0 when the rules hold, 1 with one line per offending include or untested module otherwise.
"""
import os
import re
import sys

LAYERS = ["core", "storage", "pipeline", "pg", "repo"]
PROGRAMS = ["archive_cmd", "restore_cmd", "basebackup", "remote_cmd", "tests"]
# Modules whose tests are not tests/unit/test_<module>.c, and where they are.
TESTED_BY = {
    "common/core/config_retention.c": "tests/unit/test_retention_config.c",
    "common/core/config_monitor.c": "tests/unit/test_monitor_config.c",
    "common/pipeline/filter_lz4.c": "tests/unit/test_filter.c",
    "common/pipeline/filter_sha256.c": "tests/unit/test_filter.c",
    "common/storage/posix.c": "tests/unit/test_storage.c",
    "common/storage/s3/sign.c": "tests/unit/test_s3sign.c",
    "common/storage/s3/curl_dl.c": "tests/integration/test_s3_driver.py",
    "common/storage/s3/driver.c": "tests/integration/test_s3_driver.py",
    "common/storage/s3/http.c": "tests/integration/test_s3_driver.py",
    "common/storage/s3/read.c": "tests/integration/test_s3_driver.py",
    "common/storage/s3/write.c": "tests/integration/test_s3_driver.py",
    "common/storage/ssh.c": "tests/integration/test_ssh_repo.py",
    "common/pg/sql.c": "tests/integration/test_drill_migrate.py",
    "common/repo/archwait.c": "tests/integration/test_drill_migrate.py",
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def layer_of(relpath):
    """The layer of a path below common/ ("storage/s3/http.c" -> "storage"), else None."""
    first = relpath.split("/", 1)[0]
    return first if first in LAYERS else None


def main():
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
    problems = []
    for top in ["common"] + PROGRAMS:
        base = os.path.join(root, top)
        for dirpath, _, names in os.walk(base):
            for name in sorted(names):
                if not name.endswith((".c", ".h")):
                    continue
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, root)
                here = layer_of(os.path.relpath(path, os.path.join(root, "common"))) \
                    if top == "common" else None
                if top == "common" and here is None:
                    problems.append(f"{rel}: not inside a layer folder ({', '.join(LAYERS)})")
                    continue
                with open(path, encoding="utf-8") as f:
                    for lineno, line in enumerate(f, 1):
                        m = INCLUDE.match(line)
                        if not m:
                            continue
                        inc = m.group(1)
                        target = layer_of(inc)
                        if target is None:
                            if top == "common" or not os.path.exists(os.path.join(dirpath, inc)):
                                problems.append(f"{rel}:{lineno}: \"{inc}\" names no layer "
                                                f"(write \"LAYER/{inc}\")")
                            continue
                        if not os.path.exists(os.path.join(root, "common", inc)):
                            problems.append(f"{rel}:{lineno}: \"{inc}\" does not exist in common/")
                        elif here is not None and LAYERS.index(target) > LAYERS.index(here):
                            problems.append(f"{rel}:{lineno}: {here}/ includes \"{inc}\" from "
                                            f"{target}/, a layer above it")
    for dirpath, _, names in os.walk(os.path.join(root, "common")):
        for name in sorted(names):
            if not name.endswith(".c"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, name), root)
            test = TESTED_BY.get(rel, f"tests/unit/test_{name[:-2]}.c")
            if not os.path.exists(os.path.join(root, test)):
                problems.append(f"{rel}: no test file {test}")
    # The README's table of exit codes names every class of the error table.
    with open(os.path.join(root, "common", "core", "error.h"), encoding="utf-8") as f:
        codes = re.findall(r'XX\(\w+, "([^"]+)", (\d+)\)', f.read())
    with open(os.path.join(root, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    for desc, code in codes:
        if f"| {code} | {desc} |" not in readme:
            problems.append(f"README.md: the exit code table lacks \"| {code} | {desc} |\"")
    for p in problems:
        print(p)
    if problems:
        print(f"check_layers: {len(problems)} problem(s): includes must point down "
              f"({' < '.join(LAYERS)}) and every module needs its test")
        return 1
    print(f"check_layers: includes point down ({' < '.join(LAYERS)}); every module has its test")
    return 0


if __name__ == "__main__":
    sys.exit(main())
