"""Runtime: settings, wiring of adapters, and the node that runs roles."""
