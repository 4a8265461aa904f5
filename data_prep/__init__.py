"""Builders of the on-disk datasets hat_min trains and evaluates on (see data_prep/README.md).

The names below are loaded on first use, so that ``data_prep.splits`` (the split names, which the
command line of ``python -m hat_min`` reads) does not import ``datasets``.
"""
import importlib

from data_prep.splits import GENERALISATION_SPLITS, PHRASING_SPLITS, SPLITS, UNSEEN_SPLIT

_LAZY = {"BASE_FEATURES": "data_prep._common", "DataPrepError": "data_prep._common", "to_rgb": "data_prep._common",
         "save_dataset": "data_prep._write"}

__all__ = ["BASE_FEATURES", "GENERALISATION_SPLITS", "PHRASING_SPLITS", "SPLITS", "UNSEEN_SPLIT", "DataPrepError",
           "save_dataset", "to_rgb"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'data_prep' has no attribute {name!r}")
