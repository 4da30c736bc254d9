"""Data in: image datasets (the class-mixed search split) and NAS-Bench-201 benchmark tables."""
