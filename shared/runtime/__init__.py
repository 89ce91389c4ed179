"""Embedded runtime: everything `distillery up` needs on one machine with no infrastructure."""
