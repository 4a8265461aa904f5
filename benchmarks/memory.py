"""Feature memory of evaluation at the paper's dimensions, and where ``hat_min.evaluation`` keeps the features.

Levels of 784/196/49 regions (Swin-B stages 2-4 at 224 px), captions padded to 32 tokens, width
768 (``hat_min.evaluation.feature_memory_bytes``). The authors' release encoded every image five
times and kept float64 features; here every image and caption is encoded once and kept in fp16
on a GPU (float32 on a CPU). Features that need more than ``GPU_SHARE`` of the free GPU memory
stay in host memory and are moved to the GPU one block at a time.

    python benchmarks/memory.py
"""
from __future__ import annotations

import torch

from hat_min.evaluation.protocols import GPU_SHARE, feature_memory_bytes

REGIONS, WORDS, WIDTH = (784, 196, 49), 32, 768
SPLITS = {"Flickr30K test": (1000, 5000), "MSCOCO 5K test": (5000, 25000)}
GPUS_GB = (16, 24, 40, 80)


def main() -> None:
    print("| split | images x captions | hat_min fp16 | hat_min float32 (CPU) "
          "| 5x images, float64 (the release's way) |")
    print("|---|---|---|---|---|")
    for name, (n_img, n_cap) in SPLITS.items():
        ours = feature_memory_bytes(n_img, n_cap, REGIONS, WORDS, WIDTH, torch.float16)
        cpu = feature_memory_bytes(n_img, n_cap, REGIONS, WORDS, WIDTH, torch.float32)
        release = feature_memory_bytes(5 * n_img, n_cap, REGIONS, WORDS, WIDTH, torch.float64)
        print(f"| {name} | {n_img:,} x {n_cap:,} | {ours / 1e9:.2f} GB | {cpu / 1e9:.2f} GB | {release / 1e9:.1f} GB |")
    print()
    print(f"Placement (features in GPU memory when they need at most {GPU_SHARE:.0%} of the free memory):")
    print("| split | " + " | ".join(f"{gb} GB free" for gb in GPUS_GB) + " |")
    print("|---|" + "---|" * len(GPUS_GB))
    for name, (n_img, n_cap) in SPLITS.items():
        ours = feature_memory_bytes(n_img, n_cap, REGIONS, WORDS, WIDTH, torch.float16)
        cells = ["GPU" if ours <= GPU_SHARE * gb * 1e9 else "host" for gb in GPUS_GB]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
