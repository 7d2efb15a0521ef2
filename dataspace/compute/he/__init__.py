"""The homomorphic-encryption engine (CKKS, TenSEAL). Nothing here touches the database; the
Django side that stores, schedules and releases lives in ``dataspace.compute``.

Keys and parameters
    ``params``       the CKKS parameter set of each ``Level`` (sums, products) and why
    ``keys``         fresh keys per dataset and level; loading public and secret contexts

The encrypted store
    ``layout``       what a store holds: a plan per column (``ColumnKind``), its series and blobs
    ``plaintext``    reading plaintext columns (numbers, categories, buckets) and rounding numbers
    ``profiling``    which columns are encrypted and how: the plan and the first pass over the data
    ``encryption``   the second pass and the entry point, ``encrypt_columns``
    ``executors``    the encryption worker processes, closed on every path
    ``framing``      the RLCT1 blob of framed ciphertexts, written and read
    ``store``        a written store: its series read by key, all of it deleted
    ``view``         what a consumer may see of a store, uses listed by the operations

The operations
    ``operations``   the eight operations and ``REGISTRY``: roles, parameters, terms, released JSON
    ``validation``   checking a request's parameters: the roles and the filter
    ``terms``        the algebra every operation reduces to, and the depth and level checks
    ``evaluation``   terms evaluated over ciphertexts (HE worker) and decrypted (custodian)
    ``result``       a refusal, an encrypted result on the wire, a decrypted aggregate
    ``references``   every operation's answer on plaintext with numpy, to check the engine
"""
