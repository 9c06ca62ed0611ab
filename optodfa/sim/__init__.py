"""Simulators behind the device protocols. Nothing here knows about networks."""
