"""The HTTP API: app factory, dependencies, routes, reloads, auth, schemas, metrics, workers."""
