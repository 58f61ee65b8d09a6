"""The pure domain of Chronoq: standard library only, no I/O."""
