"""Profiles: which model, recipe, data and device a notebook (or you) gets on this machine.

Every notebook starts with ``P = profiles.choose()``, so notebooks 02, 03 and 05 train and load the
same run. Three profiles:

- ``paper`` (a GPU and the Hugging Face Hub): the paper's model (``HATConfig.preset("paper")``:
  Swin-B and BERT-base, pretrained) with the ``colab`` recipe (the release's frozen-backbone phase,
  then a short unfrozen one: one Colab runtime) on Flickr30K (``data/f30k``, from ``data_prep.hub``);
- ``offline-gpu`` (a GPU, no hub, or ``HAT_MIN_OFFLINE=1``): the offline ``minilm`` model with the
  ``gpu`` recipe on a larger generated dataset (``data/synthetic-40k``: 40,000 training images);
- ``offline`` (no GPU): the ``minilm`` model with the ``notebook`` recipe on the default generated
  dataset (``data/synthetic``); minutes on two CPU cores.

``HAT_MIN_PROFILE=offline`` (or another name) chooses one explicitly, e.g. a GPU user who does not
want to download Flickr30K.

    P = profiles.choose()
    P.model_config(), P.train_config()       # HATConfig, TrainConfig
    data = P.ensure_data(ROOT)               # builds the dataset the first time

What the paper profile's training costs on which GPU is an estimate, not this module's business: notebook 03
(section 1) and benchmarks/README.md give it, from the step times benchmarks/gpu.sh measured.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from ..config import HATConfig
from ..training.recipe import TrainConfig

_TRUE = ("1", "true", "yes", "on")
LARGE_SYNTHETIC = {"n_train": 40_000, "n_val": 1_000, "n_test": 1_000}  # the offline-gpu profile's dataset


@dataclass(frozen=True)
class Profile:
    """A model preset, a training preset (with overrides), a dataset folder and a device."""

    name: str
    model_preset: str
    train_preset: str
    data: str  # dataset folder, relative to the repository root
    device: str
    time_budget_s: float | None = None  # a safety net for long runs (part of the run's cache key)

    @property
    def offline(self) -> bool:
        """True for the profiles that download nothing (generated data, offline weights)."""
        return self.name != "paper"

    def model_config(self, **overrides: Any) -> HATConfig:
        return HATConfig.preset(self.model_preset, **overrides)

    def train_config(self, **overrides: Any) -> TrainConfig:
        budget = {"time_budget_s": self.time_budget_s} if self.time_budget_s is not None else {}
        return TrainConfig.preset(self.train_preset, **{**budget, **overrides})

    def ensure_data(self, root: str | Path) -> Path:
        """The profile's dataset folder under ``root``, built there first when it is missing."""
        out = Path(root) / self.data
        if (out / "dataset_dict.json").is_file():
            if self.name == "offline":
                from data_prep.synthetic import not_default

                if differs := not_default(out):
                    print(differs)
            return out
        if self.name == "paper":
            from data_prep import hub

            hub.build("flickr30k", out)
        else:
            from data_prep import synthetic

            synthetic.build(out, workers=None, **(LARGE_SYNTHETIC if self.name == "offline-gpu" else {}))  # every core
        return out


PROFILES = {
    "paper": Profile("paper", "paper", "colab", "data/f30k", "cuda", time_budget_s=3 * 3600),
    "offline-gpu": Profile("offline-gpu", "minilm", "gpu", "data/synthetic-40k", "cuda"),
    "offline": Profile("offline", "minilm", "notebook", "data/synthetic", "cpu"),
}


def choose(env: Mapping[str, str] | None = None, cuda: bool | None = None, hub: bool | None = None) -> Profile:
    """This machine's profile: ``HAT_MIN_PROFILE`` if set; else paper with a GPU and the hub, offline-gpu with a
    GPU only (or ``HAT_MIN_OFFLINE=1``), offline without a GPU. ``cuda``/``hub`` override the checks (tests)."""
    env = os.environ if env is None else env
    if env.get("HAT_MIN_PROFILE"):
        name = env["HAT_MIN_PROFILE"]
        if name not in PROFILES:
            raise ValueError(f"HAT_MIN_PROFILE={name!r} is not a profile; choose one of {', '.join(PROFILES)}")
        return PROFILES[name]
    if not (torch.cuda.is_available() if cuda is None else cuda):
        return PROFILES["offline"]
    if env.get("HAT_MIN_OFFLINE", "").lower() in _TRUE:
        return PROFILES["offline-gpu"]
    if hub is None:
        from data_prep.hub import offline_reason  # the one probe of the hub (flags, proxies)

        hub = offline_reason(flags=("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")) is None
    return PROFILES["paper" if hub else "offline-gpu"]
