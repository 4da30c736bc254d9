"""Tools built on the search: ablation grids, benchmarks (ours and NNI's DARTS), plots, export."""
