"""Server-server transport: discovery, signed requests with backoff, the remote keyring, ACLs."""
