"""Benchmark: cross-attention scoring against the release's loop and against this machine's matmul rate.

For several gallery sizes and both directions it prints the time of
``hat_min.scan_score`` with the implementation "auto" (first call, and best of --repeats), the speed-up over
the release-shaped per-caption loop (``xattn_vs_loop.per_caption_loop``), the rate in GFLOP/s
of the one unavoidable matmul (2 * N_img * N_cap * R * W * D flops, W the padded width) and its
share of the rate of a large float32 matmul timed in the same run, the largest difference to the
loop, and the peak extra memory of one call (GPU: torch.cuda.max_memory_allocated; host: the
bytes in use by malloc, sampled every 50 us by a thread).

    python benchmarks/scoring.py                      # all sizes (about a minute on 2 cores)
    python benchmarks/scoring.py --quick              # only 64 images x 320 captions, R=49, W=16, D=256
    python benchmarks/scoring.py --device cuda --dtype bfloat16
    python benchmarks/scoring.py --quick --chunk-sizes 256 1024 4096    # memory against chunk size
    python benchmarks/scoring.py --quick --no-kernels  # "blocked": t2i with the torch formulas, not the C kernels
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from xattn_vs_loop import per_caption_loop  # noqa: E402  (the release-shaped loop)

from hat_min.fast import kernels  # noqa: E402
from hat_min.scan import scan_score  # noqa: E402

IMPLEMENTATION = "auto"  # the default; --no-kernels: "blocked"

SIZES = [  # (images, captions, regions, padded words, width)
    (64, 320, 49, 16, 256),  # the target
    (16, 80, 49, 16, 256),  # a small gallery: per-call overheads show
    (64, 320, 196, 16, 256),  # Swin stage 3 at 224 px
    (32, 160, 49, 32, 768),  # the paper's width and caption length
]


def inputs(n_img: int, n_cap: int, regions: int, words: int, dim: int, device: str, dtype: torch.dtype):
    """Seeded features; captions have words // 2 to words real tokens."""
    g = torch.Generator().manual_seed(0)
    images = torch.randn(n_img, regions, dim, generator=g)
    captions = torch.randn(n_cap, words, dim, generator=g)
    lengths = torch.randint(words // 2, words + 1, (n_cap,), generator=g)
    mask = torch.arange(words)[None] < lengths[:, None]
    return images.to(device, dtype), captions.to(device, dtype), mask.to(device), lengths


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str, repeats: int) -> tuple[float, float]:
    """(first call, best of ``repeats`` later calls) in seconds."""
    times = []
    for _ in range(1 + repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times[0], min(times[1:])


def matmul_rate(device: str, dtype: torch.dtype, repeats: int = 5) -> float:
    """GFLOP/s of a large square matmul: 2048^3 in float32 on a CPU, 8192^3 in ``dtype`` on a GPU."""
    gpu = device.startswith("cuda")
    n = 8192 if gpu else 2048
    a = torch.randn(n, n, device=device, dtype=dtype if gpu else torch.float32)
    _, best = timed(lambda: a @ a, device, repeats)
    return 2 * n**3 / best / 1e9


class _MallocPeak:
    """Peak of the bytes in use by malloc (glibc's mallinfo2, all arenas), sampled every ~50 us by a thread."""

    def __init__(self):
        import ctypes
        import threading

        class Info(ctypes.Structure):
            _fields_ = [(name, ctypes.c_size_t) for name in
                        ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                         "fordblks", "keepcost")]

        self._libc = ctypes.CDLL(None)
        self._libc.mallinfo2.restype = Info
        self._stop, self._thread, self.peak = threading.Event(), threading.Thread(target=self._sample), 0

    def in_use(self) -> int:
        info = self._libc.mallinfo2()
        return info.uordblks + info.hblkhd

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.in_use())
            time.sleep(5e-5)

    def __enter__(self):
        self.base = self.peak = self.in_use()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.in_use())


def peak_bytes(images, captions, mask, direction: str, chunk_size: int, device: str) -> int:
    """Peak extra memory of one call: GPU allocator statistics, or sampled host malloc usage (glibc only)."""
    call = lambda: scan_score(images, captions, mask, direction, 9.0, IMPLEMENTATION, chunk_size)  # noqa: E731
    with torch.no_grad():
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            call()
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() - base
        try:
            sampler = _MallocPeak()
        except (OSError, AttributeError):  # not glibc >= 2.33
            return -1
        with sampler:
            call()
        return sampler.peak - sampler.base


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="only the first size (the issue's target)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--chunk-size", type=int, default=1024, help="chunk_size of the timed calls")
    p.add_argument("--chunk-sizes", type=int, nargs="*", default=None,
                   help="chunk sizes for the memory column (default: --chunk-size)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-loop", action="store_true", help="skip the release-shaped loop (no speed-up column)")
    p.add_argument("--no-kernels", action="store_true",
                   help="t2i on a CPU with the torch formulas (scan_implementation 'blocked', not 'auto')")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = p.parse_args()
    dtype = getattr(torch, args.dtype)
    global IMPLEMENTATION
    IMPLEMENTATION = "blocked" if args.no_kernels else "auto"
    chunks = args.chunk_sizes or [args.chunk_size]
    rate = matmul_rate(args.device, dtype)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"device {args.device}, {args.dtype}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {load:.2f}; large matmul (same run): {rate:.0f} GFLOP/s")
    print(f"scan implementation {IMPLEMENTATION!r}; fused CPU kernels (t2i): {kernels.status()}")
    print(f"{'size (img x cap, R, W, D)':>27} {'dir':>4} {'loop s':>8} {'first s':>8} {'best s':>8} "
          f"{'speed-up':>8} {'GFLOP/s':>8} {'of mm':>6} {'max|diff|':>9} "
          + " ".join(f"{'MB@' + str(c):>8}" for c in chunks))
    rows = []
    for size in SIZES[:1] if args.quick else SIZES:
        n_img, n_cap, regions, words, dim = size
        images, captions, mask, lengths = inputs(*size, args.device, dtype)
        flops = 2 * n_img * n_cap * regions * words * dim
        for direction in ("i2t", "t2i"):
            with torch.no_grad():
                run = lambda: scan_score(images, captions, mask, direction, 9.0, IMPLEMENTATION,  # noqa: E731
                                         args.chunk_size)
                first, best = timed(run, args.device, args.repeats)
                ours = run()
                loop_s, diff = float("nan"), float("nan")
                if not args.no_loop:
                    loop = lambda: per_caption_loop(  # noqa: E731
                        images.float(), captions.float(), lengths, direction, 9.0)
                    _, loop_s = timed(loop, args.device, 1)
                    diff = (loop() - ours).abs().max().item()
            memory = [peak_bytes(images, captions, mask, direction, c, args.device) / 1e6 for c in chunks]
            row = dict(size=list(size), direction=direction, loop_s=loop_s, first_s=first, best_s=best,
                       speedup=loop_s / best, gflops=flops / best / 1e9, share=flops / best / 1e9 / rate,
                       max_diff=diff, peak_mb={c: m for c, m in zip(chunks, memory)}, matmul_gflops=rate)
            rows.append(row)
            label = f"{n_img} x {n_cap}, {regions}, {words}, {dim}"
            print(f"{label:>27} {direction:>4} {loop_s:8.3f} {first:8.3f} {best:8.3f} {row['speedup']:7.1f}x "
                  f"{row['gflops']:8.0f} {row['share']:6.0%} {diff:9.1e} " + " ".join(f"{m:8.1f}" for m in memory))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
