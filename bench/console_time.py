#!/usr/bin/env python3
"""Times pages of the web console as a browser would fetch them: signs in with the admin
token (a session cookie), then fetches each PATH RUNS times. Prints one JSON object per
path: median time to first byte and to the last byte (seconds), bytes, and the result
rows on the page.

    console_time.py HOST:PORT TOKEN RUNS PATH...
"""
import http.client
import json
import statistics
import sys
import time
import urllib.parse

address, token, runs, paths = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
host, port = address.rsplit(":", 1)


def connect():
    return http.client.HTTPConnection(host, int(port), timeout=120)


c = connect()
c.request("POST", "/signin", urllib.parse.urlencode({"token": token}),
          {"Content-Type": "application/x-www-form-urlencoded", "Origin": f"http://{address}"})
r = c.getresponse()
r.read()
cookie = r.getheader("Set-Cookie", "").split(";", 1)[0]
assert r.status == 303 and cookie, f"sign-in failed: {r.status}"

for path in paths:
    first, total, size, rows = [], [], 0, 0
    for _ in range(runs):
        c = connect()
        t0 = time.perf_counter()
        c.request("GET", path, headers={"Cookie": cookie})
        r = c.getresponse()
        first.append(time.perf_counter() - t0)  # status line and headers: the first byte
        body = r.read()
        total.append(time.perf_counter() - t0)
        assert r.status == 200, (path, r.status, body[:300])
        size = len(body)
        rows = body.count(b'name="ids"')
        c.close()
    print(json.dumps({"path": path, "first_byte": statistics.median(first),
                      "seconds": statistics.median(total), "bytes": size, "rows": rows}))
