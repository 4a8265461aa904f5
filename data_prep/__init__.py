"""Builders of the on-disk datasets hat_min trains and evaluates on (see data_prep/README.md)."""
from data_prep._common import (BASE_FEATURES, GENERALISATION_SPLITS, PHRASING_SPLITS, SPLITS, UNSEEN_SPLIT,
                               DataPrepError, to_rgb)
from data_prep._write import save_dataset

__all__ = ["BASE_FEATURES", "GENERALISATION_SPLITS", "PHRASING_SPLITS", "SPLITS", "UNSEEN_SPLIT", "DataPrepError",
           "save_dataset", "to_rgb"]
