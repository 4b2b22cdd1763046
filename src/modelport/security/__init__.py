"""API keys and scopes, rate limits and quotas: used by the model server, the gateway and the CLI;
knows nothing of them."""
