"""Helpers shared by the test suites and the benchmark, each written once.

* ``waiting``    — deadline-bounded polls (``wait_for``, ``stays_false``, async ``poll``).
* ``times``      — ``utcnow``, ``at`` and ``parse_ts`` over ``chronoq.domain.clock``'s RFC 3339.
* ``metrics``    — the Prometheus text format: ``parse_metrics``, ``MetricSelector``, ``scrape``.
* ``processes``  — ``/proc`` inspection, process groups, a clean environment, free ports,
  ``python -m chronoq`` command lines and log tails.
* ``postgres``   — a private PostgreSQL in a temp folder, and databases on it: create, drop,
  a template migrated by ``chronoq migrate``.

Nothing here imports pytest: ``python -m bench`` (run from the repository root, which puts
the root on ``sys.path``) imports these modules too. Nothing here sleeps to *wait for* a
condition: every wait is a poll bounded by a deadline.
"""
