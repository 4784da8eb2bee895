"""Running work units inline, on a local process pool, or on a Ray cluster.

A work unit is ``(kind, payload)``; :func:`execute_unit` dispatches it against the build context.
Every unit is deterministic in its inputs, so the executor and worker count never change results.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

Unit = tuple[str, list[Any]]

_CTX: Any = None
_HANDLERS: dict[str, Callable[[Any, Any], Any]] = {}


def register(kind: str):
    """Decorator: register a handler ``fn(ctx, item) -> result`` for units of ``kind``."""

    def deco(fn):
        _HANDLERS[kind] = fn
        return fn

    return deco


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
KEEP_FREED_BELOW = 32 << 20
"""Blocks up to this size (glibc's largest mmap threshold, 32 MiB) come from the heap in a worker."""
KEEP_FREED_TOTAL = 256 << 20
"""Freed heap memory a worker keeps for reuse before returning the rest to the system."""


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse in this process (``mallopt``: mmap threshold
    :data:`KEEP_FREED_BELOW`, trim threshold :data:`KEEP_FREED_TOTAL`).

    Every sample allocates frames of the same sizes (12 MiB for a 1024 x 1024 float32 RGB image).
    By default glibc maps each such block afresh and unmaps it when freed, so every page of every
    frame faults in again, sample after sample: about 7,500 page faults and a quarter of the time
    of a 1024 composite. With the blocks kept, a worker's memory stays at the peak of one sample.
    Returns False (and changes nothing) where the C library has no ``mallopt`` (not glibc).
    """
    import ctypes
    import ctypes.util

    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, KEEP_FREED_BELOW)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP_FREED_TOTAL))


def _single_thread() -> None:
    """A render worker's set-up: one OpenCV thread (N workers on N cores), freed memory kept."""
    import cv2

    cv2.setNumThreads(1)
    keep_freed_memory()


DEFAULT_MODULES = ("synth.build",)


def _import_all(modules: Sequence[str]) -> None:
    import importlib

    for name in modules:
        importlib.import_module(name)  # registers the module's handlers in a fresh worker


def _init_worker(ctx: Any, modules: Sequence[str] = DEFAULT_MODULES, warm: Sequence[str] = ()) -> None:
    global _CTX
    _single_thread()
    _import_all((*modules, *warm))
    _CTX = ctx


def execute_unit(ctx: Any, unit: Unit) -> list[Any]:
    """Run one unit: the handler of ``unit[0]`` on each item of ``unit[1]``, in order."""
    kind, items = unit
    fn = _HANDLERS[kind]
    return [fn(ctx, item) for item in items]


def _mp_context(modules: Sequence[str] = DEFAULT_MODULES):
    """A fork server with the handler modules preloaded where the platform has one: workers start
    in milliseconds, and never inherit a parent's OpenCV thread pool (a plain fork after OpenCV has
    started threads can deadlock); spawn elsewhere. (The preload list only takes effect when the
    fork server is not yet running; workers import the modules in any case.)"""
    # one BLAS thread per worker: N workers on N cores must not each start N BLAS threads
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(list(modules))
        return ctx
    return mp.get_context("spawn")


def _pool_unit(unit: Unit) -> list[Any]:
    return execute_unit(_CTX, unit)


def default_workers() -> int:
    """All cores available to this process."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1


def chunk(items: Sequence[Any], workers: int, per_worker: int = 4, max_size: int = 64) -> list[list[Any]]:
    """Split ``items`` into about ``workers * per_worker`` units of at most ``max_size`` items."""
    if not items:
        return []
    size = max(1, min(max_size, -(-len(items) // max(1, workers * per_worker))))
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def guided_chunks(items: Sequence[Any], workers: int, max_size: int = 64) -> list[list[Any]]:
    """Split ``items`` into consecutive units that shrink as the work runs out: each unit takes
    ``ceil(R / (2 workers))`` of the ``R`` items still unassigned, at most ``max_size``, at least 1.

    Guided self-scheduling (Polychronopoulos and Kuck, IEEE Trans. Computers 36(12), 1987) with
    the remainder split over twice the workers, as factoring (Hummel, Schonberg and Flynn, CACM
    35(8), 1992) sizes its batches: early units are large (few hand-offs), the last ones hold one
    item, so no worker waits at the end for another's long unit. Equal units of ``n / (16
    workers)`` could leave one of two workers idle for up to a unit: list scheduling of measured
    per-sample costs bounds 2 workers at 1.93x with them and 1.975x with these for 40 composites
    at 1024 (1.975x and 1.982x for 80 at 512, where units hold 3 samples).

    Args:
        items: in order; the units keep it (concatenated, they are ``items``).
        workers: >= 1 (a smaller value counts as 1). max_size: >= 1, the largest unit.

    Returns:
        The units, each a non-empty list; none when ``items`` is empty.
    """
    parts = 2 * max(1, workers)
    out, at, n = [], 0, len(items)
    while at < n:
        size = max(1, min(max_size, -(-(n - at) // parts)))
        out.append(list(items[at : at + size]))
        at += size
    return out


class Workers:
    """Workers that hold ``ctx``, started once and used for every phase of a job (:meth:`run`).

    Entering starts them (processes, module imports, the context shipped once per worker, one
    warm-up task each), so a phase's time is its work alone; leaving stops them. ``workers <= 1``
    with ``local`` runs inline: this process then gets a worker's set-up (one OpenCV thread, freed
    memory kept, :func:`keep_freed_memory`, ``warm`` imported). ``ray`` starts (or joins, with
    ``ray_address``) Ray, puts the context in its object store once, and gives back an instance it
    started itself; its workers import ``warm`` with their first unit.

    Args:
        ctx: the job's context, shipped once per worker.
        workers: process count for ``local``; CPU count asked of a local Ray instance for ``ray``.
        executor: ``local`` or ``ray``.
        ray_address: Ray cluster address (``auto``, ``ray://host:10001``); None starts a local one.
        modules: modules a worker imports so that their handlers are registered (a fork server
            preloads them).
        warm: modules each worker imports as it starts, after it is forked, because their import
            is slow: pymatting compiles its numba kernels on its first import after an install.
            Never preloaded: once numba's OpenMP threading layer runs in a process, a fork of it
            aborts ("fork() called from a process already using GNU OpenMP").

    Raises:
        ImportError: ``ray`` asked for but not installed (``pip install liftlab[distributed]``).
        ValueError: unknown executor.
    """

    def __init__(self, ctx: Any, *, workers: int, executor: str = "local", ray_address: str | None = None,
                 modules: Sequence[str] = DEFAULT_MODULES, warm: Sequence[str] = ()):
        if executor not in ("local", "ray"):
            raise ValueError(f"unknown executor {executor!r}; use 'local' or 'ray'")
        self.ctx, self.workers, self.executor, self.ray_address, self.modules = ctx, workers, executor, ray_address, tuple(modules)
        self.warm = tuple(warm)
        self._pool: ProcessPoolExecutor | None = None
        self._ray = None
        self._ray_started = False

    def __enter__(self) -> "Workers":
        if self.executor == "ray":
            self._start_ray()
        elif self.workers > 1:
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=_mp_context(self.modules),
                                             initializer=_init_worker, initargs=(self.ctx, self.modules, self.warm))
            # each warm-up task holds its worker a moment, so every worker starts now
            list(self._pool.map(_ready, range(self.workers)))
        else:
            _single_thread()
            _import_all(self.warm)
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._ray_started:
            self._ray.shutdown()
            self._ray_started = False

    def run(self, units: list[Unit], on_done: Callable[[int], None] | None = None) -> Iterator[list[Any]]:
        """Yield each unit's result list as units finish (completion order); ``on_done`` is called
        with the item count of each finished unit (progress bars)."""
        if self._ray is not None:
            remote = self._ray.remote(num_cpus=1)(_ray_unit)
            refs = {remote.remote(self._ctx_ref, u, (*self.modules, *self.warm)): len(u[1]) for u in units}
            while refs:
                done, _ = self._ray.wait(list(refs), num_returns=1)
                for ref in done:
                    n = refs.pop(ref)
                    res = self._ray.get(ref)
                    if on_done:
                        on_done(n)
                    yield res
            return
        if self._pool is None:
            for unit in units:
                res = execute_unit(self.ctx, unit)
                if on_done:
                    on_done(len(unit[1]))
                yield res
            return
        pending = {self._pool.submit(_pool_unit, u): len(u[1]) for u in units}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                n = pending.pop(fut)
                res = fut.result()
                if on_done:
                    on_done(n)
                yield res

    def _start_ray(self) -> None:
        try:
            import ray
        except ImportError as exc:  # pragma: no cover - depends on the extra
            raise ImportError("the ray executor needs the 'distributed' extra: pip install 'liftlab[distributed]'") from exc
        if not ray.is_initialized():
            if self.ray_address:
                ray.init(address=self.ray_address, log_to_driver=False)
            else:
                # a fresh local instance, never a cluster that happens to run on this machine
                ray.init(address="local", num_cpus=max(1, self.workers), include_dashboard=False, log_to_driver=False)
            self._ray_started = True
        self._ray = ray
        self._ctx_ref = ray.put(self.ctx)


def _ready(_: int) -> int:
    time.sleep(0.05)
    return os.getpid()


def run_units(
    ctx: Any, units: list[Unit], *, workers: int, executor: str = "local", ray_address: str | None = None,
    on_done: Callable[[int], None] | None = None, modules: Sequence[str] = DEFAULT_MODULES,
) -> Iterator[list[Any]]:
    """Yield each unit's result list as units finish (completion order), on :class:`Workers`
    started for these units alone (one unit, or one worker, runs inline).

    Args: as :class:`Workers`; ``on_done`` as :meth:`Workers.run`.

    Raises:
        ImportError: ``ray`` asked for but not installed (``pip install liftlab[distributed]``).
        ValueError: unknown executor.
    """
    if executor == "local" and len(units) <= 1:
        workers = 1
    with Workers(ctx, workers=workers, executor=executor, ray_address=ray_address, modules=modules) as pool:
        yield from pool.run(units, on_done)


def _ray_unit(ctx: Any, unit: Unit, modules: Sequence[str] = DEFAULT_MODULES) -> list[Any]:
    _single_thread()
    _import_all(modules)
    return execute_unit(ctx, unit)
