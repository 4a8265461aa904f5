"""What the notebooks need around the paper: which run a machine gets, the figures, the explorer, the ablations.

- ``profiles.py``: ``choose()``: the paper model on a GPU with the hub, the offline model otherwise;
- ``plots.py``: the explanatory figures (dataset pages, token grids, heat maps, ablation bars);
- ``viz.py`` and ``curves.py``: what a trained model retrieves and how training went, and an ipywidgets explorer;
- ``attention.py`` and ``grounding.py``: one pair's attention maps, and whether a word's attention lands on
  the objects it names;
- ``ablation.py``: the paper's ablation questions (levels, direction, lambda) over paired seeds.

Only this subpackage imports matplotlib and ipywidgets; each module is imported on its own:

    from hat_min.tutorial import plots, profiles, viz
"""
