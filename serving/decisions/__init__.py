"""Pure decision rules on arrays: drivers, phrasing, playbook, recommendations, stages.

``vocabulary`` holds the codes and labels they share, ``conditions`` and ``formats`` the small
languages of the catalogs, ``one_row`` the one-account twins of the rules on plain floats.
"""
