"""Pure event code: room versions, the event model, redaction, auth rules, building and validation."""
