"""Stage `validate`: ``validate`` checks corrections with a Great Expectations suite."""
