"""deepmlf command-line interface (Typer + Rich)."""
