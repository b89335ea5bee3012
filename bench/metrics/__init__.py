"""Pure functions over per-sample rows: classification metrics, AUROC, CHAIR, bootstrap intervals.

Every function accepts optional bootstrap ``weights`` of shape [B, n] (how many times each row was
drawn in each of B resamples) and then returns B values, so an interval is one vectorised call.
"""
