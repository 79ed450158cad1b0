"""Server signing keys, JSON signing and verification, event content and reference hashes."""
