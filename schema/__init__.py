"""Database migrations (NNNN_name.sql); installed as the package ``homeserver._schema``."""
