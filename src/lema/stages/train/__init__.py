"""Stage `train`: ``train`` fine-tunes with TRL (full or LoRA/QLoRA, resumable)."""
