"""Training HAT: the loop, the recipes, resumable checkpoints, several processes, and the loaders it reads.

- ``loop.py``: ``train`` (one run, validated, resumable) and ``train_or_load`` (a notebook's cached run);
- ``recipe.py``: ``TrainConfig`` and its presets (``paper``, ``colab``, ``demo``, ``notebook``, ``gpu``);
- ``checkpoint.py``: ``best/`` and ``last/``, written atomically, and the rules of a run folder;
- ``distributed.py``: ``torchrun``: features gathered over processes, gradients averaged;
- ``data.py``: training batches (``EpochBatches``: an epoch a pure function of seed and epoch; whole
  families of hard negatives), and the checks of the data before the first step;
- ``runlog.py``: ``metrics.jsonl``, one record per step and per validation.

The objective is the model's (``HAT.objective`` in hat_min/model.py); this subpackage decides when and how
often it is minimised. It uses ``hat_min.evaluation`` to validate, never the reverse.

    from hat_min.training import TrainConfig, train
    model, summary = train(HATConfig.preset("minilm"), TrainConfig.preset("demo"), "data/synthetic", "runs/demo")
"""
from .recipe import DEFAULT_TRAIN_PRESET, TRAIN_PRESETS, TrainConfig
from .runlog import read_generalisation, read_metrics
from .loop import NonFiniteLossError, cached_run_dir, train, train_or_load

__all__ = ["DEFAULT_TRAIN_PRESET", "TRAIN_PRESETS", "TrainConfig", "read_generalisation", "read_metrics",
           "NonFiniteLossError", "cached_run_dir", "train", "train_or_load"]
