"""Background jobs: long admin tasks run in batches, resumable after a restart."""
