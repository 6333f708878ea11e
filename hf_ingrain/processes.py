"""[`worker_pool`]: the one way this package spreads work over processes (the key's ingrainers, the benchmark's
schemes). On a few CPU cores the small models here use threads poorly, so processes of one thread each do more work
per minute than one process of many threads; each process gets an equal share of this process's threads."""

from contextlib import contextmanager

import torch
import torch.multiprocessing as mp


@contextmanager
def worker_pool(num_proc: int, num_tasks: int):
    """A pool of `min(num_proc, num_tasks)` spawned processes, each on `torch.get_num_threads() // num_proc` threads
    (at least one); yields the multiprocessing context (for a `Manager`) and the pool. The processes are spawned,
    since forking is unsafe once this process has run OpenMP threads, so a script must call this under
    `if __name__ == "__main__":`. When the block ends normally the pool is closed and joined, which lets the
    processes exit and clean up; terminating them (on an error) leaks their semaphores."""
    num_proc = max(1, min(num_proc, num_tasks))
    threads = max(1, torch.get_num_threads() // num_proc)
    context = mp.get_context("spawn")
    with context.Pool(num_proc, initializer=_use_threads, initargs=(threads,)) as pool:
        yield context, pool
        pool.close()
        pool.join()


def _use_threads(threads: int) -> None:
    torch.set_num_threads(threads)
