"""The homomorphic-encryption engine: CKKS parameter sets and keys (``params``, ``keys``), the
encrypted column store (``layout``, ``store``) and the operations a consumer may request
(``operations``). Nothing here touches the database; the Django side lives in
``dataspace.compute``."""
