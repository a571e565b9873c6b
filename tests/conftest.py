"""Shared fixtures. Component fixtures (broker, HTTP servers) live in tests/support."""

pytest_plugins = ["tests.support.kafka_fixtures", "tests.support.phoenix", "tests.support.cli"]
