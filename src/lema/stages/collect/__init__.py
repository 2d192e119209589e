"""Stage `collect`: ``collect`` samples CoT paths and splits them into right and wrong."""
