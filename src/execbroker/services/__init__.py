"""The broker's decisions: planning offers, accepting, rejecting, cancelling, expiring."""
