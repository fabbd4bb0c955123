"""Depot's version, as the console shows it and a DP node reports it in /dp/v1/health."""
__version__ = "0.1.0"
