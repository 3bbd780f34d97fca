"""How callscreen runs: the settings object, the command line, the local stack.

This package is the composition root: it builds the one settings object per process
and wires features/models/streaming/service/training together. Nothing imports it.
"""
