"""Stage `pool` (rounds >= 2): the cumulative training data of all rounds so far."""
