"""Intel SGX and TDX DCAP quotes, verified with their collateral by ``dcap-qvl``.

``dcap-qvl`` checks the quote's signatures, the PCK chain and CRLs, the TCB info and the QE
identity, and returns Intel's TCB verdict. Around it this module adds what a relying party needs
that the library leaves open:

- the Intel SGX Root CA is pinned here by fingerprint, required at the top of the quote's PCK
  chain and of every collateral chain, and handed to ``dcap-qvl`` as its only root;
- the quote must be byte-canonical: its declared length, certification-data types and PEM chain
  exactly as the format defines them, with only zero padding after the quote. ``dcap-qvl``
  skips over all of these, so without this a bit flipped there would go unnoticed;
- the validity window (certificates, CRLs, TCB info, QE identity) is computed from the
  collateral, so ``verify`` can tell an expired quote from a forged one.

Quote versions 3 (SGX) and 4 (SGX, TDX 1.0) with an embedded PCK chain (certification data type
5) are supported; others are refused as malformed rather than half-checked.
"""

from __future__ import annotations

import json
import logging
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dcap_qvl
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from enclaves.attestation import _x509
from enclaves.attestation.errors import AttestationRefused, RefusalCode
from enclaves.attestation.evidence import Claims, Evidence, Policy, TcbStatus, TeeType, ValidityWindow

logger = logging.getLogger(__name__)

# Intel SGX Root CA (CN=Intel SGX Root CA, valid 2018-05-21 to 2049-12-31), SHA-256 of its DER as
# published at https://certificates.trustedservices.intel.com/Intel_SGX_Provisioning_Certification_RootCA.cer;
# the same root dcap-qvl embeds and the last certificate of every Intel PCK and collateral chain.
INTEL_SGX_ROOT_CA_SHA256 = bytes.fromhex("44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3")

HEADER_LEN = 48
TEE_TYPE_SGX = 0x00000000
TEE_TYPE_TDX = 0x00000081
SGX_REPORT_LEN = 384
TDX10_REPORT_LEN = 584
ECDSA_SIGNATURE_LEN = 64
ECDSA_KEY_LEN = 64
QE_REPORT_LEN = 384
CERT_DATA_PCK_CHAIN = 5
CERT_DATA_QE_REPORT = 6
MAX_QUOTE_LEN = 64 * 1024
SGX_ATTRIBUTE_DEBUG = 0x02  # ATTRIBUTES.DEBUG, bit 1 of the first flags byte
TDX_ATTRIBUTE_DEBUG = 0x01  # TD_ATTRIBUTES.TUD.DEBUG, bit 0


@dataclass(frozen=True)
class _Quote:
    tee_type: TeeType
    pck_chain: list[x509.Certificate]
    report: Any  # dcap_qvl's parsed report body (SgxEnclaveReport or TdReport10)


class _Reader:
    """Little-endian reads that refuse to run past the end."""

    def __init__(self, data: bytes, offset: int = 0) -> None:
        self.data = data
        self.offset = offset

    def take(self, length: int) -> bytes:
        if length < 0 or self.offset + length > len(self.data):
            raise AttestationRefused(RefusalCode.EVIDENCE_MALFORMED, {"reason": "quote truncated"})
        chunk = self.data[self.offset : self.offset + length]
        self.offset += length
        return chunk

    def u16(self) -> int:
        return int(struct.unpack("<H", self.take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack("<I", self.take(4))[0])


def _malformed(reason: str) -> AttestationRefused:
    return AttestationRefused(RefusalCode.EVIDENCE_MALFORMED, {"reason": reason})


def _qe_report_certification(reader: _Reader) -> bytes:
    """QE report, its signature, the QE authentication data and the PCK chain; returns the PEM."""
    reader.take(QE_REPORT_LEN + ECDSA_SIGNATURE_LEN)
    reader.take(reader.u16())
    if reader.u16() != CERT_DATA_PCK_CHAIN:
        raise _malformed("only an embedded PCK certificate chain is supported")
    return reader.take(reader.u32())


def _pck_chain_pem(quote: bytes) -> tuple[TeeType, bytes]:
    """Walk the quote's framing and return its TEE type and embedded PCK chain, refusing any
    length, type or padding other than the format's own."""
    if len(quote) > MAX_QUOTE_LEN:
        raise _malformed("quote too large")
    reader = _Reader(quote)
    version = reader.u16()
    reader.take(2)  # attestation key type, checked by dcap-qvl
    tee_type_code = reader.u32()
    reader.take(HEADER_LEN - 8)
    if tee_type_code == TEE_TYPE_SGX and version in (3, 4):
        tee_type, body_len = TeeType.SGX, SGX_REPORT_LEN
    elif tee_type_code == TEE_TYPE_TDX and version == 4:
        tee_type, body_len = TeeType.TDX, TDX10_REPORT_LEN
    else:
        raise _malformed("unsupported quote version or TEE type")
    reader.take(body_len)
    signed_len = reader.u32()
    end = reader.offset + signed_len
    if end > len(quote) or any(quote[end:]):
        raise _malformed("bytes after the quote are not zero padding")
    inner = _Reader(quote[:end], reader.offset)
    inner.take(ECDSA_SIGNATURE_LEN + ECDSA_KEY_LEN)
    if version == 3:
        pem = _qe_report_certification(inner)
    else:
        if inner.u16() != CERT_DATA_QE_REPORT:
            raise _malformed("version 4 quotes carry QE report certification data")
        nested = _Reader(inner.take(inner.u32()))
        pem = _qe_report_certification(nested)
        if nested.offset != len(nested.data):
            raise _malformed("QE report certification data has trailing bytes")
    if inner.offset != end:
        raise _malformed("signature data has trailing bytes")
    # The chain is written as a C string: one terminating NUL is part of the format.
    return tee_type, pem.removesuffix(b"\0")


def _parse_quote(quote: bytes) -> _Quote:
    tee_type, pem = _pck_chain_pem(quote)
    chain = _x509.load_canonical_pem_chain(pem)
    try:
        report = dcap_qvl.parse_quote(quote).report
    except ValueError as exc:
        raise AttestationRefused(RefusalCode.EVIDENCE_MALFORMED) from exc
    return _Quote(tee_type=tee_type, pck_chain=chain, report=report)


@dataclass(frozen=True)
class _Collateral:
    source: dcap_qvl.QuoteCollateralV3
    chains: dict[str, list[x509.Certificate]]
    crls: dict[str, x509.CertificateRevocationList]
    dated: list[tuple[datetime, datetime]]


def _iso(value: object) -> datetime:
    if not isinstance(value, str):
        raise _malformed("collateral date missing")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise AttestationRefused(RefusalCode.EVIDENCE_MALFORMED) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _signed_body(document: str, wrapper: str) -> dict[str, Any]:
    try:
        body = json.loads(document)
    except ValueError as exc:
        raise AttestationRefused(RefusalCode.EVIDENCE_MALFORMED) from exc
    if isinstance(body, dict) and isinstance(body.get(wrapper), dict):
        body = body[wrapper]  # Intel's PCS wraps the signed body; dcap-qvl's JSON may not
    if not isinstance(body, dict):
        raise _malformed("collateral document is not an object")
    return body


def _parse_collateral(collateral: bytes) -> _Collateral:
    try:
        source = dcap_qvl.QuoteCollateralV3.from_json(collateral.decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise AttestationRefused(RefusalCode.EVIDENCE_MALFORMED) from exc
    chains = {
        name: _x509.load_canonical_pem_chain(source_chain.encode())
        for name, source_chain in (
            ("pck_crl_issuer_chain", source.pck_crl_issuer_chain),
            ("tcb_info_issuer_chain", source.tcb_info_issuer_chain),
            ("qe_identity_issuer_chain", source.qe_identity_issuer_chain),
        )
    }
    try:
        crls = {
            "root_ca_crl": x509.load_der_x509_crl(source.root_ca_crl),
            "pck_crl": x509.load_der_x509_crl(source.pck_crl),
        }
    except ValueError as exc:
        raise AttestationRefused(RefusalCode.EVIDENCE_MALFORMED) from exc
    dated = []
    for document, wrapper in ((source.tcb_info, "tcbInfo"), (source.qe_identity, "enclaveIdentity")):
        body = _signed_body(document, wrapper)
        dated.append((_iso(body.get("issueDate")), _iso(body.get("nextUpdate"))))
    for crl in crls.values():
        if crl.next_update_utc is None:
            raise _malformed("a CRL has no next update")
        dated.append((crl.last_update_utc, crl.next_update_utc))
    return _Collateral(source=source, chains=chains, crls=crls, dated=dated)


def _claims(quote: _Quote, collateral: _Collateral, status: TcbStatus, advisories: frozenset[str]) -> Claims:
    report = quote.report
    all_certs = [*quote.pck_chain, *(cert for chain in collateral.chains.values() for cert in chain)]
    validity = ValidityWindow.intersect([*_x509.window_of(all_certs), *collateral.dated])
    if quote.tee_type is TeeType.SGX:
        return Claims(
            measurement=bytes(report.mr_enclave),
            measurements={"mr_enclave": bytes(report.mr_enclave), "mr_signer": bytes(report.mr_signer)},
            signer=bytes(report.mr_signer),
            debug=bool(report.attributes[0] & SGX_ATTRIBUTE_DEBUG),
            tcb_status=status,
            advisories=advisories,
            report_data=bytes(report.report_data),
            validity=validity,
        )
    registers = (
        *("mr_td", "mr_seam", "mr_signer_seam", "mr_config_id", "mr_owner", "mr_owner_config"),
        *("rt_mr0", "rt_mr1", "rt_mr2", "rt_mr3"),
    )
    return Claims(
        measurement=bytes(report.mr_td),
        measurements={name: bytes(getattr(report, name)) for name in registers},
        signer=b"",  # a TD has no signer; its owner, if any, is mr_owner
        debug=bool(report.td_attributes[0] & TDX_ATTRIBUTE_DEBUG),
        tcb_status=status,
        advisories=advisories,
        report_data=bytes(report.report_data),
        validity=validity,
    )


def evidence_from_quote(quote: bytes, collateral: bytes, *, ephemeral_public_key: bytes) -> Evidence:
    """Parse a quote and its collateral (dcap-qvl's JSON form). The TCB status is Intel's verdict
    on the quote against its collateral, so the parsed claims read NotReported; the verified
    claims carry the verdict."""
    parsed = _parse_quote(quote)
    claims = _claims(parsed, _parse_collateral(collateral), TcbStatus.NOT_REPORTED, frozenset())
    return Evidence(
        tee_type=parsed.tee_type,
        raw=quote,
        claims=claims,
        ephemeral_public_key=ephemeral_public_key,
        collateral=(collateral,),
    )


def _check_chains(quote: _Quote, collateral: _Collateral) -> x509.Certificate:
    """Every chain ends in the pinned root and is signed link by link; the PCK CRL is issued by
    the PCK certificate's own issuer. Returns the root."""
    _x509.check_issued_chain(quote.pck_chain, INTEL_SGX_ROOT_CA_SHA256)
    for chain in collateral.chains.values():
        _x509.check_issued_chain(chain, INTEL_SGX_ROOT_CA_SHA256)
    root = quote.pck_chain[-1]
    crl_issuer = collateral.chains["pck_crl_issuer_chain"][0]
    if len(quote.pck_chain) < 2 or quote.pck_chain[1] != crl_issuer:
        raise AttestationRefused(RefusalCode.CHAIN_UNTRUSTED)
    for crl, issuer in ((collateral.crls["pck_crl"], crl_issuer), (collateral.crls["root_ca_crl"], root)):
        key = issuer.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey) or not crl.is_signature_valid(key):
            raise AttestationRefused(RefusalCode.SIGNATURE_INVALID)
    return root


def _refusal_for(error: str) -> RefusalCode:
    """dcap-qvl reports failures as text; map them to our codes (unknown text is a bad
    signature, the conservative reading)."""
    text = error.lower()
    if "expired" in text:
        return RefusalCode.EXPIRED
    if "future" in text or "notvalidyet" in text:
        return RefusalCode.NOT_YET_VALID
    if "certificate chain" in text or "issuer" in text or "revoked" in text or "pck certificate" in text:
        return RefusalCode.CHAIN_UNTRUSTED
    if "decode" in text or "parse" in text:
        return RefusalCode.EVIDENCE_MALFORMED
    return RefusalCode.SIGNATURE_INVALID


def _tcb_status(name: str) -> TcbStatus:
    try:
        status = TcbStatus(name)
    except ValueError:
        logger.warning("dcap-qvl reported an unknown TCB status %r; treating it as OutOfDate", name)
        return TcbStatus.OUT_OF_DATE
    return TcbStatus.OUT_OF_DATE if status is TcbStatus.NOT_REPORTED else status


def check_signatures(evidence: Evidence, policy: Policy, now: datetime) -> Claims:
    """The quote, its PCK chain and its collateral against the pinned Intel root, judged at the
    moment of the validity window nearest to ``now``; returns the authenticated claims with
    Intel's TCB verdict."""
    if len(evidence.collateral) != 1:
        raise _malformed("DCAP evidence carries exactly one collateral document")
    quote = _parse_quote(evidence.raw)
    collateral = _parse_collateral(evidence.collateral[0])
    if quote.tee_type is not evidence.tee_type:
        raise _malformed("the quote's TEE type is not the evidence's")
    window = _claims(quote, collateral, TcbStatus.NOT_REPORTED, frozenset()).validity
    if window.empty:
        raise AttestationRefused(RefusalCode.CHAIN_UNTRUSTED)
    root = _check_chains(quote, collateral)
    at = int(window.clamp(now).timestamp())
    try:
        verdict = dcap_qvl.verify_with_root_ca(evidence.raw, collateral.source, root.public_bytes(Encoding.DER), at)
    except ValueError as exc:
        logger.info("dcap-qvl refused a %s quote: %s", quote.tee_type, exc)
        raise AttestationRefused(_refusal_for(str(exc))) from exc
    return _claims(quote, collateral, _tcb_status(verdict.status), frozenset(verdict.advisory_ids))
