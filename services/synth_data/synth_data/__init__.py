"""The synth-data service."""
