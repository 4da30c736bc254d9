"""Everything that talks to NNI's experiment machinery (not its NAS API).

- ``trial``: the one place that touches ``nni.trial`` internals (parameters, metric channel, TensorBoard link);
- ``rest``:  a small client of a running NNI manager's REST API;
- ``store``: reads a stopped experiment's directory (``db/nni.sqlite``) and the experiment registry.

``rest`` and ``store`` return the same plain records (``store.TrialRecord`` / ``store.MetricRecord``), so the
export logic does not care whether an experiment is running.
"""
