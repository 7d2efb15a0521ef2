"""Chain signals: other apps answer the chain's questions without the chain knowing them."""

from django.dispatch import Signal

# Sent by ``deploy.deploy_all`` when neither the caller nor CUSTODIAN_ADDRESS names the key
# custodian's receipt-signing address; a receiver returns that address, or None when this
# process does not hold the receipt key (a chain signer in production, which is given the
# address instead).
custodian_address_query = Signal()
