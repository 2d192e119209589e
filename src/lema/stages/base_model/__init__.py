"""Stage `base-model`: ``build`` pretrains the embedded tiny Llama from scratch."""
