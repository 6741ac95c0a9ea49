import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from django.db import connection


def run_threads(count: int, work: Callable[[int], object]) -> list:
    """Run work(0..count-1) in as many threads, each with its own database connection,
    released together by a barrier so that they really collide."""
    barrier = threading.Barrier(count)

    def start(n: int):
        try:
            barrier.wait()
            return work(n)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(start, range(count)))
