"""Thin HTTP handlers, one module per spec area; functions named after the spec's operationId."""
