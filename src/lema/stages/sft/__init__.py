"""Stage `build-sft`: ``build`` writes the CoT-only and CoT + corrections SFT sets."""
