"""Point-in-time feature families, one module per input table.

Each module aggregates its table's events once per (account, as_of) and derives the catalog
features of the families that table feeds:

- ``orders``: spend, rhythm, breadth and price
- ``interactions``: relationship
- ``complaints``: service
- ``deliveries``: supply
- ``accounts``: account (master data and spend tier) and season

A module exposes ``TABLE`` (its input table), ``LOOKBACK_DAYS`` (how far before as_of its events
matter; ``None`` = all history), ``events(table)`` (the table reduced to the columns its metrics
need, with the event ``day``), ``metrics(rows)`` (conditional aggregates over the events joined
to the as_of dates, where ``rows.d`` is the number of days from the event to as_of) and
``finish(frame)`` (the features, derived from the metrics after they were joined onto the
population, so accounts without events get zero counts rather than missing rows). ``orders``
also takes the numbering of the product categories (``orders.categories``), and ``accounts``
works on the population directly.
"""
