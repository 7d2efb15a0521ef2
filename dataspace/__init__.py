"""Redlake: a trusted data space. Data usable, not obtainable.

This package is imported first by every kind of process (gunicorn loading ``dataspace.wsgi``,
``celery -A dataspace``, ``manage.py`` through ``dataspace.settings``), so process-wide guards
that must hold before any request or message is read live here.
"""

import sys

# py_ecc (pulled in by eth_account through eth_keyfile) raises the interpreter's recursion limit to
# 100,000 when it is imported. The C JSON parser (and pickle, re, repr ...) then recurses that deep
# on hostile input and overflows the C stack: the process dies with SIGSEGV instead of raising
# RecursionError, so one nested request body or broker message kills a web or worker process. We
# import it here, before anything else can, and put the limit back: the module is then cached and
# never raises it again. Nothing Redlake calls in py_ecc needs deep recursion (we sign with
# secp256k1 through eth_keys, not BLS).
_recursion_limit = sys.getrecursionlimit()
import py_ecc  # noqa: E402, F401

sys.setrecursionlimit(_recursion_limit)

from dataspace.celery import app as celery_app  # noqa: E402

__all__ = ["celery_app"]
