"""The LeMa lab: the paper's three claims, and LeMa in rounds, measured on a synthetic task a tiny model learns."""
