"""Media repository endpoints: content-repo.yaml (legacy /_matrix/media) and
authed-content-repo.yaml (/_matrix/client/v1/media)."""
