"""The optical feedback study's pieces, one job a module; ``experiments/optical_feedback.py`` is its entry point.

* :mod:`.grid`: the settings the study trains (axes, variants, the full and the quick grid);
* :mod:`.records`: a finished sweep folder read back into one record per variant;
* :mod:`.analysis`: statistics over records (mean ± sd over seeds, counters per epoch, the Pareto front);
* :mod:`.tables`: the markdown tables; :mod:`.figures`: the figures (matplotlib, no pyplot state);
* :mod:`.report`: every table and figure of the study written from a sweep folder alone.
"""
