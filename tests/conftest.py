"""Shared fixtures. Component fixtures (broker, HTTP servers) live in tests/support."""
