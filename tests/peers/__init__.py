"""Real peers for tests: provisioned from scripts/peers (cached), started by tests, stopped by them."""
