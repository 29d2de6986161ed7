"""Model life cycle: datasets, training, export."""
