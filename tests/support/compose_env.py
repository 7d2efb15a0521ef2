"""Throwaway values for every secret docker-compose.yml requires: enough to check its structure
(scripts/test.sh, tests/security/test_compose_roles.py), never a real secret. Run as a script it
prints them as NAME=value lines for ``env``."""

from __future__ import annotations

COMPOSE_SECRETS = {
    "SECRET_KEY": "validate",
    "POSTGRES_PASSWORD": "validate",
    **{f"REDLAKE_KEYRING_{name}": "validate" for name in ("DATA", "CKKS", "WALLET", "RECEIPT")},
    **{f"REDLAKE_KEYRING_{name}_PUBLIC": "validate" for name in ("DATA", "CKKS", "WALLET")},
    "CHAIN_OPERATOR_KEY": "validate",
    "CHAIN_OPERATOR_ADDRESS": "0x0000000000000000000000000000000000000001",
    "CUSTODIAN_KEY": "validate",
    "CUSTODIAN_ADDRESS": "0x0000000000000000000000000000000000000002",
    **{f"REDLAKE_DB_PASSWORD_{role}": "validate" for role in ("WEB", "INGEST", "HE", "CUSTODIAN", "CHAIN", "BEAT")},
}

if __name__ == "__main__":
    print(" ".join(f"{name}={value}" for name, value in COMPOSE_SECRETS.items()))
