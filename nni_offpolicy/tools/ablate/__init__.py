"""The ablation harness: one grid of searches over variants x seeds, then a table (CSV + markdown) and a plot.

Every run uses the same preset, space, data, epochs and overrides; only the way the architecture parameters learn
(and the seed) changes:

- ``offpolicy-uniform`` / ``offpolicy-egreedy`` / ``on-policy``: the REINFORCE controller with behaviour policy
  uniform, epsilon-greedy (``epsilon``) or pi itself;
- ``random``: no learning (RandomNAS): random per-edge shrinking, a uniformly random genotype of the final
  stage's ops, seeded by the run's seed; its uniform samples give the best-sampled architecture;
- ``darts``: first-order DARTS on the same supernet and schedule (``learners.darts_alpha_step``), inputs derived
  by edge strength;
- ``offpolicy-naswot``: ``offpolicy-uniform`` whose reward also multiplies in the NASWOT zero-cost score of each
  sampled cell (``zero_cost.py``), (score / target) ^ 4.

Layout of ``output``::

    <variant>/seed<k>/       one search (genotype.json, metrics.jsonl, checkpoint.pt, tensorboard/)
    <variant>/seed<k>/retrain/   with retrain_epochs: the derived cell retrained (result.json)
    published-pdarts/seed<k>/retrain/   the published P-DARTS cell, same retrain schedule (DARTS family only)
    runs.csv, summary.md, ablation.png

With ``table`` (``TABLE[:COLUMN]``, NB201 only) every run's derived and best-sampled cells are looked up in a
benchmark table (``data/tables.py``): runs.csv, summary.md and ablation.png gain their values, beside the table's
median and optimum. The table is read and checked when the grid is planned, before any search runs.

With ``surrogate`` (``MODEL.onnx[:ENCODING.json]``, DARTS family only) every run's derived, best-sampled and
policy cell is scored by a NAS-Bench-301 surrogate (``data/surrogate.py``): runs.csv, summary.md and ablation.png
gain their predicted accuracies, the derived cell's percentile among 1,000 random cells scored by the same model,
its parameter-free normal edges and its parameters at 20 cells of 36 channels. The model is opened and checked
when the grid is planned. Re-running a finished grid with it only adds the columns (every search is skipped).

A run whose genotype.json exists is skipped (a killed grid resumes; a run killed mid-way resumes from its
checkpoint), as is a retrain whose result.json exists, after checking that they were made with these settings.

One job a module, dependencies one way (``variants`` and ``plan`` at the bottom, ``grid`` at the top):
``variants`` (the table of variants and how one becomes a run's settings), ``plan`` (the grid's records: ``Run``,
``Plan``), ``judging`` (what a finished run is worth: its row, its cells' table and surrogate values),
``retrains`` (the short retrain of each derived cell and of the published reference), ``report`` (runs.csv,
summary.md, ablation.png) and ``grid`` (planning, running and resuming the grid). This package's namespace holds
what the command and the tests use.
"""
from __future__ import annotations

from nni_offpolicy.tools.ablate.grid import plan_ablation, run_ablation
from nni_offpolicy.tools.ablate.judging import parameter_free_share, run_row, table_values
from nni_offpolicy.tools.ablate.plan import Plan
from nni_offpolicy.tools.ablate.report import COLUMNS, SURROGATE_COLUMNS
from nni_offpolicy.tools.ablate.variants import VARIANTS, parse_seeds

__all__ = ["COLUMNS", "SURROGATE_COLUMNS", "Plan", "VARIANTS", "parameter_free_share", "parse_seeds", "plan_ablation",
           "run_ablation", "run_row", "table_values"]
