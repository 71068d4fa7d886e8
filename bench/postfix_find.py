#!/usr/bin/env python3
"""The Postfix way to find queued mail by content: list the queue (`postqueue -j`) and
read every message (`postcat -bq`), printing the ids whose body contains NEEDLE."""
import json
import subprocess
import sys

conf, needle = sys.argv[1], sys.argv[2].encode()
listing = subprocess.run(["postqueue", "-c", conf, "-j"], capture_output=True, check=True).stdout
for line in listing.splitlines():
    qid = json.loads(line)["queue_id"]
    body = subprocess.run(["postcat", "-c", conf, "-bq", qid], capture_output=True).stdout
    if needle in body:
        print(qid)
