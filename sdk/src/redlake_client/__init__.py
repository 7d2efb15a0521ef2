"""redlake-client: a consumer's SDK for a Redlake data space (no Django inside).

from redlake_client import Client, signing
client = Client.login("http://127.0.0.1:8000", "consumer", "redlake-consumer")
job = client.run(agreement_id, "mean", {"column": "cost"}, signer=signing.from_key_file("~/.redlake/key"))
client.verify(job)
"""

from redlake_client import errors, signing
from redlake_client.client import Client
from redlake_client.models import Agreement, Algorithm, Dataset, Job, Offer, Space
from redlake_client.verify import VerificationReport, verify

__all__ = [
    "Agreement",
    "Algorithm",
    "Client",
    "Dataset",
    "Job",
    "Offer",
    "Space",
    "VerificationReport",
    "errors",
    "signing",
    "verify",
]
__version__ = "0.1.0"
