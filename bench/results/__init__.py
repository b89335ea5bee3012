"""Run outputs: the results schema, reading runs, metrics aggregation, the leaderboard."""
