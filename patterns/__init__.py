"""Pattern folding of repeated call sequences (see issue: pattern folding)."""
