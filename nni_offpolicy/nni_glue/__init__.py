"""Everything that talks to NNI's experiment machinery (not its NAS API).

- ``trial``: the one place that touches ``nni.trial`` internals (parameters, metric channel, TensorBoard link);
- ``rest``:  a small client of a running NNI manager's REST API;
- ``store``: reads a stopped experiment's directory (``db/nni.sqlite``) and the experiment registry;
- ``harmless``: NNI's and torch's known-harmless warnings and log lines, filtered by their exact text.

``rest`` and ``store`` return the same plain records (``store.TrialRecord`` / ``store.MetricRecord``), so the
export logic does not care whether an experiment is running.
"""
