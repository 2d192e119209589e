"""Stage `evaluate`: ``evaluate`` grades greedy (and sampled) answers on every eval set."""
