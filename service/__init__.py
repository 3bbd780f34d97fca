"""The FastAPI application: switch API, analyst workbench, bank feed."""
