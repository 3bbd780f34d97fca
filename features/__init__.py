"""Contracts, phone-number classification, feature definitions and the feature store."""
