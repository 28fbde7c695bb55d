"""The contract shared by training and serving: feature spec, scorer, the MLflow scoring bundle."""
