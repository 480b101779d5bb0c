"""Feature extraction from raw media: audio, face, transcripts, datasets.

Never imports `models`, Typer or Rich; never prints: it returns and raises.
"""
