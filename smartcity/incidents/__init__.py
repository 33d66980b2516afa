"""Incident rules, lifecycle, evidence requests and traffic statistics (issue 6)."""
