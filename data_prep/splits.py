"""The names of the splits every prepared dataset holds: a module without imports, cheap for the command line."""

SPLITS = ("train", "val", "test")
# Test-only splits of the generated scenes (``data_prep.synthetic``) that measure generalisation:
# test_unseen, new images whose groups pair attributes that no training or pretraining scene pairs
# (``data_prep.captions.HELD_OUT_COMBINATIONS``), and the phrasing splits, the test images again
# with captions from a grammar that training never sees (``data_prep.phrasing``).
PHRASING_SPLITS = ("test_frames", "test_words")
UNSEEN_SPLIT = "test_unseen"
GENERALISATION_SPLITS = (UNSEEN_SPLIT, *PHRASING_SPLITS)
