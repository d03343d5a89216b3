"""The worker's options: ``WorkerConfig`` and the command line that fills it.

Read once at start-up by ``_worker.run``; ``python -m snakepit_bridge.worker
--help`` lists them.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["DEFAULT_MAX_FRAME_BYTES", "THREAD_SAFETY_WARNING_EVENT", "WorkerConfig", "parse_args"]

DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024
# Name of the telemetry events carrying thread-safety checker warnings.
THREAD_SAFETY_WARNING_EVENT = "snakepit.thread_safety.warning"

@dataclass(frozen=True, slots=True)
class WorkerConfig:
    adapter: str
    fd: int = 3
    profile: str = "process"
    threads: int = 8
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    python_path: tuple[str, ...] = ()
    worker_id: str = ""
    pool: str = ""
    busy_poll_us: int = 0
    thread_safety_check: bool = False
    # The universal FFI: whether its tools are served, the refs each session
    # may hold, how long an unused ref lives (0: until released), helpers.
    ffi: bool = True
    max_refs: int = 10_000
    ref_ttl_ms: int = 0
    helper_dirs: tuple[str, ...] = ()
    helper_allow: tuple[str, ...] = ()
    # Shared memory (local workers): the inherited memfds of the host's arena
    # (mapped read-only) and of this worker's (read-write), their size, and
    # the smallest ndarray/bytes that travels in them. -1: none, all inline.
    shm_host_fd: int = -1
    shm_worker_fd: int = -1
    shm_bytes: int = 0
    shm_threshold: int = 65536
    # What becomes of an object in a tool's result or stream item that has
    # no wire form: "marker" (converted, or a marker map), "ref" (an FFI
    # object ref) or "error" (the request fails); see ``serialization``.
    unserializable: str = "marker"

    @property
    def capacity(self) -> int:
        return 1 if self.profile == "process" else self.threads


def parse_args(argv: Sequence[str] | None = None) -> WorkerConfig:
    p = argparse.ArgumentParser(
        prog="python -m snakepit_bridge.worker",
        description="Serve a snakepit adapter over an inherited Unix stream socket.",
    )
    p.add_argument("--adapter", required=True, help="adapter class as module.Class")
    p.add_argument("--fd", type=int, default=3, help="inherited connected socket (default 3)")
    p.add_argument("--profile", choices=("process", "thread"), default="process")
    p.add_argument("--threads", type=int, default=8, help="executor threads (thread profile only)")
    p.add_argument("--max-frame-bytes", type=int, default=DEFAULT_MAX_FRAME_BYTES)
    p.add_argument("--python-path", action="append", default=[], metavar="DIR", help="prepended to sys.path")
    p.add_argument("--worker-id", default="")
    p.add_argument("--pool", default="")
    p.add_argument(
        "--busy-poll-us",
        type=int,
        default=0,
        help="when idle, poll the socket this long before sleeping (cuts wake-up latency)",
    )
    p.add_argument(
        "--thread-safety-check",
        action="store_true",
        help="check every tool call with a ThreadSafetyChecker; its warnings are sent as "
        f"{THREAD_SAFETY_WARNING_EVENT} telemetry events",
    )
    p.add_argument(
        "--max-refs",
        type=int,
        default=10_000,
        metavar="N",
        help="FFI: refs one session may hold; one more evicts the least recently used (default 10000)",
    )
    p.add_argument(
        "--ref-ttl-ms",
        type=int,
        default=0,
        metavar="N",
        help="FFI: drop a ref unused this long (default 0: never)",
    )
    p.add_argument(
        "--helper-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="FFI: directory of helper files (file.py with functions; repeatable, first match wins)",
    )
    p.add_argument(
        "--helper-allow",
        action="append",
        default=[],
        metavar="PATTERN",
        help="FFI: fnmatch pattern over file.function a helper must match (repeatable; none: all allowed)",
    )
    p.add_argument("--no-ffi", action="store_true", help="do not serve the snakepit.ffi.* tools")
    p.add_argument("--shm-host-fd", type=int, default=-1, metavar="FD", help="inherited memfd of the host's arena")
    p.add_argument("--shm-worker-fd", type=int, default=-1, metavar="FD", help="inherited memfd of this worker's arena")
    p.add_argument("--shm-bytes", type=int, default=0, metavar="N", help="size of each arena (max_shared_bytes)")
    p.add_argument(
        "--shm-threshold",
        type=int,
        default=65536,
        metavar="N",
        help="ndarrays and bytes of at least N bytes travel in shared memory (default 65536)",
    )
    p.add_argument(
        "--unserializable",
        choices=("marker", "ref", "error"),
        default="marker",
        help="objects without a wire form in tool results and stream items: converted (model_dump, to_dict, "
        "_asdict, tolist, isoformat) or replaced by a marker map (marker, the default), kept in the worker "
        "as object refs (ref), or an ENCODING error (error)",
    )
    ns = p.parse_args(argv)
    if ns.threads < 1:
        p.error("--threads must be at least 1")
    if ns.max_frame_bytes < 1024:
        p.error("--max-frame-bytes must be at least 1024")
    if ns.max_refs < 1:
        p.error("--max-refs must be at least 1")
    if ns.ref_ttl_ms < 0:
        p.error("--ref-ttl-ms must not be negative")
    shm_given = (ns.shm_host_fd >= 0, ns.shm_worker_fd >= 0, ns.shm_bytes > 0)
    if any(shm_given) and not all(shm_given):
        p.error("--shm-host-fd, --shm-worker-fd and --shm-bytes go together")
    if ns.shm_threshold < 1:
        p.error("--shm-threshold must be at least 1")
    return WorkerConfig(
        adapter=ns.adapter,
        fd=ns.fd,
        profile=ns.profile,
        threads=ns.threads,
        max_frame_bytes=ns.max_frame_bytes,
        python_path=tuple(ns.python_path),
        worker_id=ns.worker_id,
        pool=ns.pool,
        busy_poll_us=max(0, ns.busy_poll_us),
        thread_safety_check=ns.thread_safety_check,
        ffi=not ns.no_ffi,
        max_refs=ns.max_refs,
        ref_ttl_ms=ns.ref_ttl_ms,
        helper_dirs=tuple(ns.helper_dir),
        helper_allow=tuple(ns.helper_allow),
        shm_host_fd=ns.shm_host_fd if all(shm_given) else -1,
        shm_worker_fd=ns.shm_worker_fd if all(shm_given) else -1,
        shm_bytes=ns.shm_bytes if all(shm_given) else 0,
        shm_threshold=ns.shm_threshold,
        unserializable=ns.unserializable,
    )
