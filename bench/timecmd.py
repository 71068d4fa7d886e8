#!/usr/bin/env python3
"""Runs a shell command RUNS times; prints JSON: median wall seconds and the number of
output lines of the last run (how many matches a search printed)."""
import json
import statistics
import subprocess
import sys
import time

runs = int(sys.argv[1])
cmd = sys.argv[2]
times, lines = [], 0
for _ in range(runs):
    t = time.perf_counter()
    out = subprocess.run(cmd, shell=True, capture_output=True, check=True).stdout
    times.append(time.perf_counter() - t)
    lines = out.count(b"\n")
print(json.dumps({"seconds": statistics.median(times), "runs": times, "lines": lines}))
