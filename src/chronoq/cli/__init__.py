"""The ``chronoq`` command line."""
