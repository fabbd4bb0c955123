"""Copies and verifies: an admin, central rescans (`rescan`, `fresh` and `status_at` live in
tests/conftest.py), and a DP node added as the local DP Seattle."""
