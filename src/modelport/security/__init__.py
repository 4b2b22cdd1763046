"""Security: API keys and scopes, rate limits and quotas, TLS settings, the control plane's
tokens, apply's allow-list and the audit log; used by the model server, the gateway, the control
plane and the CLI, knowing nothing of them."""
