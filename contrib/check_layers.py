#!/usr/bin/env python3
"""check_layers.py - the include rule of common/, checked.

common/ is layered; a layer may include its own headers and those of the layers below it, never
one above it, and nothing in common/ includes a program's header:

    core  <  storage  <  pipeline  <  pg  <  repo

Every include of a project header names its layer ("core/buf.h", "storage/s3/sign.h"); a bare
name is allowed only for a header next to the including file in a program folder ("push.h").
Exit 0 when the rule holds, 1 with one line per offending include otherwise.
"""
import os
import re
import sys

LAYERS = ["core", "storage", "pipeline", "pg", "repo"]
PROGRAMS = ["archive_cmd", "restore_cmd", "basebackup", "remote_cmd", "tests"]
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
    for p in problems:
        print(p)
    if problems:
        print(f"check_layers: {len(problems)} include(s) break the rule "
              f"({' < '.join(LAYERS)})")
        return 1
    print(f"check_layers: includes point down ({' < '.join(LAYERS)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
