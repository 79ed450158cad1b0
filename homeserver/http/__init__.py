"""HTTP plumbing: routing with declared auth, request parsing, middlewares, rate limits."""
