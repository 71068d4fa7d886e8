"""An S3-compatible object store for the tests: moto's server (PyPI `moto[server]`) on
loopback, one per test run, started when a test first needs it and stopped at exit."""

import atexit
import os
import socket
import subprocess
import time
import uuid

import boto3

ACCESS_KEY = "lazaret-test-key"
SECRET_KEY = "lazaret-test-secret"


class S3Peer:
    def __init__(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc = None
        self.start()
        self.client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
        )

    def start(self):
        self.proc = subprocess.Popen(
            ["moto_server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("moto_server did not start")
                time.sleep(0.1)

    def stop(self):
        """Takes the object store away (its contents with it: moto keeps them in memory)."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    def new_bucket(self) -> str:
        name = "lazaret-" + uuid.uuid4().hex[:16]
        self.client.create_bucket(Bucket=name)
        return name

    def keys(self, bucket, prefix="") -> list:
        out = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            out += [o["Key"] for o in page.get("Contents", [])]
        return out

    def get(self, bucket, key) -> bytes:
        return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()

    def put(self, bucket, key, data: bytes):
        self.client.put_object(Bucket=bucket, Key=key, Body=data)

    def delete(self, bucket, key):
        self.client.delete_object(Bucket=bucket, Key=key)

    def store_config(self, workdir, bucket, prefix="") -> str:
        """`[store]` keys for a server whose message bodies go to `bucket`, the keys in a
        credentials file of mode 0600 in `workdir`."""
        creds = os.path.join(workdir, "s3-credentials.toml")
        with open(os.open(creds, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(f'access_key_id = "{ACCESS_KEY}"\nsecret_access_key = "{SECRET_KEY}"\n')
        return (
            'blobs = "s3"\n'
            f'bucket = "{bucket}"\n'
            f'endpoint = "{self.endpoint}"\n'
            f'prefix = "{prefix}"\n'
            f'credentials_file = "{creds}"\n'
        )


_peer = None


def peer() -> S3Peer:
    """The run's object store, started on first use."""
    global _peer
    if _peer is None:
        _peer = S3Peer()
        atexit.register(_peer.stop)
    return _peer
