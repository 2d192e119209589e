"""Stage `report`: ``report`` writes the Markdown report and its plots."""
