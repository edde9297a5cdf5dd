"""What every stage shares and nothing in emocli lies below: errors, lazy imports, the sample table,
the per-sample feature container, label maps and atomic file writes."""
