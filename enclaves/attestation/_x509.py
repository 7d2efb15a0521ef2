"""Certificate helpers the hardware verifiers share: strict parsing, the pinned-root check, chain
signatures and the validity window.

A parse failure is ``evidence_malformed``; a chain that does not end in the pinned root, or whose
links are not each signed by the next, is ``chain_untrusted``. Time is never judged here: the
window is returned, and ``verify`` checks it after the signatures.
"""

from __future__ import annotations

import hashlib
import itertools
import warnings
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.utils import CryptographyDeprecationWarning

from enclaves.attestation.errors import AttestationRefused, RefusalCode


def load_der(der: bytes) -> x509.Certificate:
    try:
        with warnings.catch_warnings():
            # AMD's KDS issues VCEKs with serial number 0, which RFC 5280 forbids and cryptography
            # warns about; the certificate is still AMD's and its signature is what we check.
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            return x509.load_der_x509_certificate(der)
    except (ValueError, x509.InvalidVersion) as exc:
        raise AttestationRefused(RefusalCode.EVIDENCE_MALFORMED) from exc


def load_canonical_pem_chain(pem: bytes) -> list[x509.Certificate]:
    """Certificates from a PEM chain that must be byte-for-byte the canonical PEM of those
    certificates: whitespace or trailing text a lenient parser would skip is refused, so a chain
    has exactly one encoding (and one bit flipped anywhere in it is noticed)."""
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except (ValueError, x509.InvalidVersion) as exc:
        raise AttestationRefused(RefusalCode.EVIDENCE_MALFORMED) from exc
    if b"".join(cert.public_bytes(Encoding.PEM) for cert in certs) != pem:
        raise AttestationRefused(RefusalCode.EVIDENCE_MALFORMED, {"reason": "non-canonical PEM chain"})
    return certs


def fingerprint(cert: x509.Certificate) -> bytes:
    """SHA-256 of the certificate's DER, the form vendors publish their roots' pins in."""
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).digest()


def window_of(certs: list[x509.Certificate]) -> list[tuple[datetime, datetime]]:
    return [(cert.not_valid_before_utc, cert.not_valid_after_utc) for cert in certs]


def check_issued_chain(chain: list[x509.Certificate], pinned_root_sha256: bytes) -> None:
    """``chain`` runs leaf first, root last; the root must be the pinned one and every other
    certificate must be signed by the one after it (name chaining and signature)."""
    if not chain or fingerprint(chain[-1]) != pinned_root_sha256:
        raise AttestationRefused(RefusalCode.CHAIN_UNTRUSTED)
    for subject, issuer in itertools.pairwise(chain):
        try:
            subject.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm) as exc:
            raise AttestationRefused(RefusalCode.CHAIN_UNTRUSTED) from exc
