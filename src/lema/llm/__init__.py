"""The LLM client side: ``backends`` (vLLM, transformers, OpenAI-compatible generation), ``transport`` (the
OpenAI client with retries), ``wire`` (request/response/usage records), ``cache``, ``budget`` and ``batch``."""
