"""The `distillery` command line: run the platform locally and operate it."""
