"""DeepMLF models, data, training and metrics (PyTorch).

Never imports `extractors`, Typer or Rich; never prints: it returns and raises.
"""
