"""The HTTP API: app factory, auth, schemas, observability, workers."""
