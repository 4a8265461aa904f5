"""What the notebooks need around the paper: which run a machine gets, the figures, the explorer, the ablations.

- ``profiles.py``: ``choose()``: the paper model on a GPU with the hub, the offline model otherwise;
- ``plots.py``: the explanatory figures (dataset pages, token grids, heat maps, ablation bars);
- ``viz.py`` and ``curves.py``: what a trained model retrieves and how training went, and an ipywidgets explorer;
- ``scenes.py``: the generated scenes' geometry against what was retrieved (diagonal scenes, a caption's errors);
- ``attention.py`` and ``grounding.py``: one pair's attention maps, and whether a word's attention lands on
  the objects it names;
- ``ablation.py``: the paper's ablation questions (levels, direction, lambda) over paired seeds;
- ``knockout.py``: one trained model scored with each subset of its levels (notebook 04, no training);
- ``budget.py``: a recipe's GPU-hours and whether a grid fits one Colab runtime.

Only this subpackage imports matplotlib and ipywidgets; each module is imported on its own:

    from hat_min.tutorial import plots, profiles, viz
"""
