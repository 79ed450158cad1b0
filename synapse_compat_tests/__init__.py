"""Black-box Matrix client-server compatibility tests (run against any homeserver base URL)."""
