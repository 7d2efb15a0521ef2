import { describe, expect, it } from "vitest";
import fixture from "./fixtures/receipt.json";
import { canonicalJson, parseJson } from "./canonical";
import { attestationHash, batchProof, receiptSigner, readShared, resultCommitment, settledAttestation, verifyShared } from "./verify";
import type { Hex } from "viem";

// fixtures/receipt.json was written by the server's own code (dataspace/compute/receipts.py with
// a fixed custodian key): what the browser recomputes must equal what Python produced.
const chain = { jobId: fixture.job_id as Hex, resultHash: fixture.result_hash as Hex, attestationHash: fixture.attestation_hash as Hex };

describe("canonical JSON", () => {
  it("keeps Python's number text and sorts keys by code point", () => {
    expect(canonicalJson(parseJson('{"b": 2.0, "a": [1e-09, -0.5, true, null], "中": "é\\n"}'))).toBe(
      '{"a":[1e-09,-0.5,true,null],"b":2.0,"中":"é\\n"}',
    );
  });
  it("refuses malformed input", () => {
    expect(() => parseJson('{"a": }')).toThrow();
    expect(() => parseJson('{"a": 1} x')).toThrow();
  });
});

describe("receipt verification", () => {
  it("recomputes the salted commitment the server computed", () => {
    const { released, receipt } = readShared(fixture.shared);
    expect(resultCommitment(released, receipt.result_salt as Hex)).toBe(fixture.result_hash);
  });
  it("recomputes the attestation hash and recovers the custodian", async () => {
    const { receipt } = readShared(fixture.shared);
    expect(attestationHash(receipt)).toBe(fixture.attestation_hash);
    expect(await receiptSigner(receipt)).toBe(fixture.custodian);
  });
  it("passes every check on the shared receipt", async () => {
    const checks = await verifyShared(fixture.shared, chain, [fixture.custodian]);
    expect(checks.filter((c) => !c.ok)).toEqual([]);
    expect(checks.map((c) => c.name)).toEqual(["parsed", "job", "commitment", "chain_result", "attestation", "signature"]);
  });
  it("fails the commitment when the result was changed", async () => {
    const tampered = fixture.shared.replace('"north": 41.5', '"north": 41.6');
    const failed = (await verifyShared(tampered, chain, [fixture.custodian])).filter((c) => !c.ok).map((c) => c.name);
    expect(failed).toEqual(["commitment", "chain_result"]);
  });
  it("fails the signature and attestation when the receipt was changed", async () => {
    const tampered = fixture.shared.replace('"epsilon": 0.1', '"epsilon": 0.01');
    const failed = (await verifyShared(tampered, chain, [fixture.custodian])).filter((c) => !c.ok).map((c) => c.name);
    expect(failed).toEqual(["attestation", "signature"]);
  });
  it("fails the signature when the custodian is not the published one", async () => {
    const checks = await verifyShared(fixture.shared, chain, ["0x0000000000000000000000000000000000000001"]);
    expect(checks.find((c) => c.name === "signature")?.ok).toBe(false);
  });
  it("checks an algorithm job's receipt against its enclave's attestation hash, which the chain pins", async () => {
    // dataspace/compute/tee_custody.py: JobSettled.attestationHash is the enclave's attestation,
    // named (hex, no 0x) in the receipt the custodian signs.
    const enclave = "ef".repeat(32);
    const teeShared = fixture.shared.replace('"engine": "he"', `"engine": "tee", "tee": {"label": "SIMULATED", "attestation_hash": "${enclave}"}`);
    expect(teeShared).not.toBe(fixture.shared);
    const { receipt } = readShared(teeShared);
    expect(settledAttestation(receipt)).toBe(`0x${enclave}`);
    const pinned = { ...chain, attestationHash: `0x${enclave}` as Hex };
    const checks = await verifyShared(teeShared, pinned, [fixture.custodian]);
    expect(checks.find((c) => c.name === "attestation")?.ok).toBe(true);
    expect(checks.find((c) => c.name === "signature")?.ok).toBe(false); // the receipt was changed here
    const other = await verifyShared(teeShared, { ...chain, attestationHash: `0x${"12".repeat(32)}` }, [fixture.custodian]);
    expect(other.find((c) => c.name === "attestation")?.ok).toBe(false);
    // An operation on encrypted data still pins the receipt's own hash.
    expect(settledAttestation(readShared(fixture.shared).receipt)).toBe(fixture.attestation_hash);
  });
  it("says what is wrong with something that is not a receipt", async () => {
    const checks = await verifyShared("{}", chain, [fixture.custodian]);
    expect(checks).toEqual([{ name: "parsed", ok: false, actual: "no receipt in what was pasted" }]);
  });
});

describe("a receipt settled in a batch", () => {
  const proof = [`0x${"11".repeat(32)}`, `0x${"22".repeat(32)}`];
  const batched = () => {
    const { receipt } = readShared(fixture.shared);
    return { ...receipt, batch: parseJson(JSON.stringify({ batch_id: 7, root: `0x${"33".repeat(32)}`, proof })) };
  };
  it("keeps the signed part's hash and signer: the batch proof is neither signed nor hashed", async () => {
    const receipt = batched();
    expect(attestationHash(receipt)).toBe(fixture.attestation_hash);
    expect(settledAttestation(receipt)).toBe(fixture.attestation_hash);
    expect(await receiptSigner(receipt)).toBe(fixture.custodian);
  });
  it("reads the batch id and proof it carries, and refuses a malformed one", () => {
    expect(batchProof(batched())).toEqual({ batchId: 7n, proof });
    const { receipt } = readShared(fixture.shared);
    expect(batchProof(receipt)).toBeNull();
    expect(batchProof({ ...receipt, batch: parseJson('{"batch_id": 7, "proof": ["0x12"]}') })).toBeNull();
  });
});
