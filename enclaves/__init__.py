"""The enclave side of Redlake: what runs inside (or beside) a TEE and the verifier library the key
custodian calls before it releases a data key. Nothing here imports Django."""
