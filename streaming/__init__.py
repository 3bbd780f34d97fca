"""Kafka consumers and producers around the screening engine."""
