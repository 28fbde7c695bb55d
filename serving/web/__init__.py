"""The managers' page: routes, query parsing, charts, formats, export, sign-in, templates."""
