"""The ``kam`` command line: thin wiring over features, training and serving."""
