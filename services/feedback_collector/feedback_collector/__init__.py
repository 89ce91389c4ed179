"""feedback-collector: production traces and feedback into training data, metrics and drift."""
