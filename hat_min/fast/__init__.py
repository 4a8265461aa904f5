"""Running HAT fast: the SCAN score in blocks and in C, on the best device, in mixed precision.

- ``blocked.py``: the implementations "blocked", "fused" and "auto" of ``hat_min.scan.scan_score``, which
  register here (importing ``hat_min`` imports this package); each is tested equal to "eager";
- ``kernels.py`` (+ ``csrc/xattn_cpu.c``): the two C passes behind "fused", built on first use (the torch
  formulas are the fallback);
- ``device.py``: which device, which precision (bf16 / fp16 with a loss scaler / fp32), in one place.
"""
from functools import partial

from ..scan import IMPLEMENTATIONS
from .blocked import scan_blocked

IMPLEMENTATIONS["blocked"] = partial(scan_blocked, fused=False)
IMPLEMENTATIONS["fused"] = partial(scan_blocked, fused=True)
IMPLEMENTATIONS["auto"] = partial(scan_blocked, fused=None)
