"""Simulator, Parquet datasets, training and evaluation reports."""
