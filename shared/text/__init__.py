"""Text utilities more than one service needs (PII scrubbing: curation and feedback-collector)."""
