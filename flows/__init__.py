"""Prefect flows that order the phases; each task calls one library function."""
