"""Chronoq's test suites; ``tests.support`` holds the helpers they (and ``bench``) share."""
