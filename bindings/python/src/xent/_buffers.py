"""Memory for large results (B x V gradients, probabilities, elementwise losses).

A fresh buffer from malloc (numpy's or torch's CPU allocator) is a new
anonymous mapping: its first write takes one page fault per 4 KiB page, which
costs more than the kernel that fills it (~1 ns per float measured on an
AVX-512 VM, where the kernel writes the gradient at ~0.3-0.7 ns per logit).
Results of at least ``THRESHOLD`` bytes therefore come from here:

* each block is a private anonymous mapping whose data starts on a 2 MiB
  boundary and is advised ``MADV_HUGEPAGE``, so where the kernel offers
  transparent huge pages (``enabled`` = ``always`` or ``madvise``) a first
  touch faults once per 2 MiB instead of once per 4 KiB;
* a block whose last user is gone (the array, tensor, or ``x.grad`` holding
  it was freed) goes back to a bounded cache and is handed out again for the
  next result of the same size, already faulted in: a training loop that
  allocates the same gradient every step faults only on the first one.

The cache holds at most ``limit()`` bytes of idle blocks (default: 1/8 of the
physical memory; ``XENT_BUFFER_CACHE`` = a byte count, with an optional K, M
or G suffix, overrides it, and 0 turns the cache off); ``empty_cache()``
returns the idle blocks to the system. Blocks in use are never counted: they
belong to the arrays that hold them.

Python-side reference counting tells when a block is free: the array (numpy
or torch) is created over a ctypes view of the block that owns a ``_Lease``;
the lease dies, and returns the block, when the last array over it dies.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import threading

HUGE_PAGE = 2 << 20
#: Results smaller than this come from numpy's / torch's own allocator (small
#: allocations are served from malloc's already-faulted heap).
THRESHOLD = 4 << 20

_MADV_HUGEPAGE = getattr(mmap, "MADV_HUGEPAGE", None)
_FLAGS = getattr(mmap, "MAP_PRIVATE", 2) | getattr(mmap, "MAP_ANONYMOUS", 0x20)


def _parse_bytes(text):
    text = text.strip().upper()
    mult = 1
    if text and text[-1] in "KMG":
        mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[text[-1]]
        text = text[:-1]
    value = int(float(text) * mult)
    if value < 0:
        raise ValueError
    return value


def _default_limit():
    env = os.environ.get("XENT_BUFFER_CACHE")
    if env:
        try:
            return _parse_bytes(env)
        except ValueError:
            raise ValueError("XENT_BUFFER_CACHE=%r: expected a byte count such as 0, 512M or 4G" % env) from None
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 8
    except (ValueError, OSError):  # pragma: no cover - sysconf names are there on Linux
        return 1 << 30


class _Block:
    """One mapping; ``addr`` is its 2 MiB-aligned data start, ``size`` the
    usable bytes (a multiple of 2 MiB)."""

    __slots__ = ("mm", "anchor", "offset", "addr", "size")

    def __init__(self, size):
        self.mm = mmap.mmap(-1, size + HUGE_PAGE, flags=_FLAGS)
        # The anchor exports the mapping (its address); it lives as long as
        # the block, so the mapping is unmapped only when the block dies.
        self.anchor = ctypes.c_char.from_buffer(self.mm)
        base = ctypes.addressof(self.anchor)
        self.offset = (-base) % HUGE_PAGE
        self.addr = base + self.offset
        self.size = size
        if _MADV_HUGEPAGE is not None:
            try:
                self.mm.madvise(_MADV_HUGEPAGE, self.offset, size)
            except OSError:  # THP compiled out of the kernel: 4 KiB pages, still recycled
                pass


class _Lease:
    """Owned by the ctypes view under one result array; returns the block to
    the cache when the last array over it is gone."""

    __slots__ = ("block",)

    def __init__(self, block):
        self.block = block

    def __del__(self):
        try:
            _cache.release(self.block)
        except Exception:  # noqa: BLE001 - interpreter shutdown: module globals may be gone
            pass


class _Cache:
    def __init__(self, limit):
        self.limit = limit
        self.idle = {}  # size -> [blocks], most recently released last
        self.idle_bytes = 0
        self.lock = threading.RLock()  # RLock: a lease may die while this thread holds it
        self.stats = {"allocated": 0, "reused": 0, "released": 0, "unmapped": 0}

    def acquire(self, nbytes):
        size = -(-nbytes // HUGE_PAGE) * HUGE_PAGE
        with self.lock:
            blocks = self.idle.get(size)
            if blocks:
                b = blocks.pop()
                self.idle_bytes -= size
                self.stats["reused"] += 1
                return b
            self.stats["allocated"] += 1
        return _Block(size)

    def release(self, block):
        with self.lock:
            self.stats["released"] += 1
            if block.size > self.limit:
                self.stats["unmapped"] += 1
                return  # dropped: unmapped when the last reference goes
            self.idle.setdefault(block.size, []).append(block)
            self.idle_bytes += block.size
            self._trim(self.limit)

    def _trim(self, limit):
        # Evict the largest idle blocks first (a changing shape leaves its old
        # size behind), until the idle bytes fit.
        while self.idle_bytes > limit:
            size = max(self.idle)
            blocks = self.idle[size]
            blocks.pop(0)
            if not blocks:
                del self.idle[size]
            self.idle_bytes -= size
            self.stats["unmapped"] += 1

    def set_limit(self, limit):
        with self.lock:
            self.limit = limit
            self._trim(limit)


_cache = _Cache(_default_limit())


def buffer(nbytes):
    """A writable ctypes char array of ``nbytes`` over a cached, huge-page
    advised block (returned to the cache when the array and everything
    created over it are gone)."""
    block = _cache.acquire(nbytes)
    view = (ctypes.c_char * nbytes).from_buffer(block.mm, block.offset)
    view._xent_lease = _Lease(block)
    return view


def empty_cache():
    """Unmaps every idle cached block."""
    with _cache.lock:
        _cache._trim(0)


def limit():
    return _cache.limit


def set_limit(nbytes):
    nbytes = int(nbytes)
    if nbytes < 0:
        raise ValueError("the buffer cache limit must be >= 0 bytes, got %d" % nbytes)
    _cache.set_limit(nbytes)


def stats():
    with _cache.lock:
        d = dict(_cache.stats)
        d["idle_bytes"] = _cache.idle_bytes
        d["limit"] = _cache.limit
        d["idle_blocks"] = sum(len(v) for v in _cache.idle.values())
    return d
