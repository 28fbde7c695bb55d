"""The languages the product speaks to people: which one a request wants, and its catalogs.

Machine fields (codes, ids, numbers) stay the same in every language; only the words people
read change. See :mod:`~kam.serving.i18n.languages` (choosing the language) and
:mod:`~kam.serving.i18n.messages` (the message catalogs a translator edits).
"""
