"""A Redis server of a test's own: redis-server on a spare loopback port, no persistence, so
that stopping it (refused connections) or freezing it (connections accepted, never answered)
is an outage no other test sees."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import redis
from django.conf import settings

from tests.support.smtp import free_port


class RedisServer:
    def __init__(self, directory: Path):
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        # The database config.settings.test picks for this pytest worker, whatever the URL
        # says: the workers a test starts with this URL land there, so this process must too.
        return f"redis://127.0.0.1:{self.port}{urlsplit(settings.REDIS_URL).path}"

    def start(self) -> RedisServer:
        assert self.process is None
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        log = (self.directory / f"redis-{self.port}.log").open("ab")
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2, socket_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                if client.ping():
                    return self
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        """Down: every connection is refused."""
        if self.process is not None:
            self.thaw()
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def freeze(self) -> None:
        """Hung: the kernel still accepts connections, nothing ever answers them."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)
