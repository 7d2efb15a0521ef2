"""Canonical JSON: the one byte form of a document whose hash someone else checks.

Sorted keys and no whitespace, so the same document always gives the same bytes. Two forms
exist because two hashes were pinned on chain before they were unified, and a pinned hash must
never change (an auditor recomputes it from the document):

- ``canonical_json``: UTF-8 text as it is. The offers' ODRL policy hash, the custodian's
  receipts and the salted result commitments, and the jobs' request digests use it.
- ``canonical_json_ascii``: non-ASCII escaped as ``\\uXXXX``. The datasets' metadata hash has
  used it since the first registration: every registered dataset's on-chain metadata hash is
  this form's SHA-256.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

_SEPARATORS = (",", ":")


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=_SEPARATORS, ensure_ascii=False).encode()


def canonical_json_ascii(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=_SEPARATORS, ensure_ascii=True).encode()


def sha256_canonical(value: Any) -> bytes:
    return hashlib.sha256(canonical_json(value)).digest()
