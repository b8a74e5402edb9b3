"""`nmt serve`: a translation service over one Translator, batching the sentences of concurrent requests."""
