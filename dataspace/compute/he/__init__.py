"""The homomorphic-encryption engine (CKKS, TenSEAL). Nothing here touches the database; the
Django side that stores, schedules and releases lives in ``dataspace.compute``.

What it promises the custodian, who noises and releases: every aggregate carries its sensitivity
under adding or removing one row, derived from the column's bounds (every value was clamped to
them before encryption) and never from the data; and names the count aggregates of its cohort,
which count the rows that contribute to it (``terms``). A column without bounds is never summed.
Every row of a bucketed column lies in exactly one of its cells (below, buckets, above, null), so
no count is only "the rest". The custodian decrypts a result only once it has the shape the
request implies (``evaluation.load_result``).

Keys and parameters
    ``params``       the CKKS parameter set of each ``Level`` (sums, products) and why
    ``keys``         fresh keys per dataset and level; loading public and secret contexts

The encrypted store
    ``layout``       what a store holds: a plan per column (``ColumnKind``), its series and blobs
    ``plaintext``    reading plaintext columns (numbers, categories, buckets) and rounding numbers
    ``profiling``    which columns are encrypted and how: the plan and the first pass over the data
    ``estimation``   bounds and bucket edges estimated with differential privacy (OpenDP)
    ``encryption``   the second pass and the entry point, ``encrypt_columns``
    ``executors``    the encryption worker processes, closed on every path
    ``framing``      the RLCT1 blob of framed ciphertexts, written and read
    ``store``        a written store: its series read by key, all of it deleted
    ``view``         what a consumer may see of a store, uses listed by the operations

The operations
    ``operations``   the eight operations and ``REGISTRY``: roles, parameters, terms, released JSON
    ``validation``   checking a request's parameters: the roles and the filter
    ``terms``        the algebra every operation reduces to: sensitivities, cohorts, depth and level
    ``evaluation``   terms evaluated over ciphertexts (HE worker), checked and decrypted (custodian)
    ``result``       a refusal, an encrypted result on the wire, a decrypted aggregate
    ``references``   every operation's answer on plaintext with numpy, to check the engine
"""
