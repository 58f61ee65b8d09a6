"""Backend servers started locally, on loopback: for ``chronoq cluster up --with`` and tests.

One module per server (``redis``, ``etcd``, ``s3`` = SeaweedFS, ``sqs`` = moto,
``prometheus``), each a ``LocalServer`` subclass from ``base``. PostgreSQL has its
own, older module: ``chronoq.runtime.pgserver``.
"""
