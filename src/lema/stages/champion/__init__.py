"""Stage `champion` (rounds >= 2): the previous round's registry champion as this round's generator."""
