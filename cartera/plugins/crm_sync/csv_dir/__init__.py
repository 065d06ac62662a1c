"""Creditor assignment files and activity exports as CSV files in local directories."""
