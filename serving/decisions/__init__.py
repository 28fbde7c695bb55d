"""Pure decision rules on arrays: drivers, phrasing, playbook, recommendations, stages."""
