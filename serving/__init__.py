"""Scoring: the HTTP API marketing automation calls, nurture routing and batch scoring jobs."""
