"""Creditors push assignment batches to the node's HTTP API and pull (or receive) the activity export."""
