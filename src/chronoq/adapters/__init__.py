"""Adapters: the ports implemented over real backends. Only ``runtime`` imports them."""
