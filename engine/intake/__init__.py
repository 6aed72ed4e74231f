"""Everything between "bytes arrived" and "committed": receive, classify, write, answer."""
