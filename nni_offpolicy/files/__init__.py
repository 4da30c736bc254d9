"""What runs leave on disk: atomic writes, the folder lock, run-folder rules, checkpoints."""
