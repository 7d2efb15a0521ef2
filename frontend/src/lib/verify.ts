// The auditor's "verify" action: from a receipt the consumer shares (the job as the API gave it
// to them, or just {result, receipt}) and the facts the chain holds, recompute every hash.
//
//   result commitment  = sha256(salt ‖ canonical JSON of the released result)   (JobSettled.resultHash)
//   attestation hash   = sha256(canonical JSON of the signed receipt)           (JobSettled.attestationHash)
//                        or, for an algorithm job, its enclave's attestation hash, which the
//                        signed receipt names (receipt.tee.attestation_hash)
//   receipt signature  = EIP-191 over the canonical JSON of the receipt without its signature,
//                        by a custodian address the space publishes
//   a job settled in a batch (settleBatch) has no hashes of its own on chain: its receipt carries
//   `batch` (the batch id and the job's Merkle proof, neither signed nor hashed), and the leaf
//   receiptLeaf(jobId, commitment, attestation hash) must prove against the batch's root
import { concat, hexToBytes, isAddressEqual, isHex, recoverMessageAddress, sha256, stringToBytes, type Hex } from "viem";
import { RawNumber, canonicalJson, parseJson, type Json } from "./canonical";

export type CheckName = "parsed" | "job" | "commitment" | "chain_result" | "attestation" | "signature";

export interface Check {
  name: CheckName;
  ok: boolean;
  expected?: string;
  actual?: string;
}

export interface ChainFacts {
  /** The job id as the chain knows it (bytes32). */
  jobId: Hex;
  /** From JobSettled (or the batch's leaf): what the chain pinned. */
  resultHash: Hex | null;
  attestationHash: Hex | null;
}

type JsonObject = { [key: string]: Json };

/** Where a receipt settled in a batch carries its batch id and proof (dataspace/compute/receipts.py). */
export const BATCH_FIELD = "batch";

/** The receipt as the custodian signed it: without the batch proof that travels beside it. */
export function asSigned(receipt: JsonObject): JsonObject {
  const signed = { ...receipt };
  delete signed[BATCH_FIELD];
  return signed;
}

/** The batch id and Merkle proof a batched receipt carries, or null. */
export function batchProof(receipt: JsonObject): { batchId: bigint; proof: Hex[] } | null {
  const batch = receipt[BATCH_FIELD];
  if (!isObject(batch) || !Array.isArray(batch.proof)) return null;
  const id = batch.batch_id instanceof RawNumber ? batch.batch_id.text : typeof batch.batch_id === "string" ? batch.batch_id : "";
  if (!/^[0-9]+$/.test(id)) return null;
  const proof = batch.proof.map(asHex);
  if (proof.some((p) => p === null || p.length !== 66)) return null;
  return { batchId: BigInt(id), proof: proof as Hex[] };
}

function isObject(value: Json | undefined): value is JsonObject {
  return !!value && typeof value === "object" && !Array.isArray(value) && !(value instanceof RawNumber);
}

function asHex(value: Json | undefined): Hex | null {
  return typeof value === "string" && isHex(value) ? (value.toLowerCase() as Hex) : null;
}

/** Splits what was pasted into the released value and the signed receipt. */
export function readShared(text: string): { released: Json; receipt: JsonObject } {
  const doc = parseJson(text);
  if (!isObject(doc) || !isObject(doc.receipt)) throw new Error("no receipt in what was pasted");
  const receipt = doc.receipt;
  // A withheld answer releases only the custodian's reason (dataspace/compute/custody.py).
  const withheld = receipt.withheld ?? null;
  const released: Json = withheld === null ? (doc.result ?? null) : { withheld };
  return { released, receipt };
}

export function resultCommitment(released: Json, salt: Hex): Hex {
  return sha256(concat([hexToBytes(salt), stringToBytes(canonicalJson(released))]));
}

export function attestationHash(signedReceipt: JsonObject): Hex {
  return sha256(stringToBytes(canonicalJson(asSigned(signedReceipt))));
}

/** What JobSettled.attestationHash pins for this receipt: an algorithm job's enclave attestation
 * (dataspace/compute/tee_custody.py; the custodian's signature binds it into the receipt), or the
 * signed receipt's own hash for an operation on encrypted data. */
export function settledAttestation(signedReceipt: JsonObject): Hex {
  const tee = signedReceipt.tee;
  if (signedReceipt.engine === "tee" && isObject(tee) && typeof tee.attestation_hash === "string") {
    const hash = tee.attestation_hash.toLowerCase();
    return (hash.startsWith("0x") ? hash : `0x${hash}`) as Hex;
  }
  return attestationHash(signedReceipt);
}

export async function receiptSigner(signedReceipt: JsonObject): Promise<Hex> {
  const { signature, ...body } = asSigned(signedReceipt);
  if (typeof signature !== "string" || !isHex(signature)) throw new Error("the receipt has no signature");
  return recoverMessageAddress({ message: { raw: stringToBytes(canonicalJson(body)) }, signature });
}

export async function verifyShared(text: string, chain: ChainFacts, custodians: string[]): Promise<Check[]> {
  let shared: ReturnType<typeof readShared>;
  try {
    shared = readShared(text);
  } catch (error) {
    return [{ name: "parsed", ok: false, actual: String((error as Error).message) }];
  }
  const { released, receipt } = shared;
  const checks: Check[] = [{ name: "parsed", ok: true }];
  const jobId = asHex(receipt.job_id);
  checks.push({ name: "job", ok: jobId === chain.jobId.toLowerCase(), expected: chain.jobId, actual: jobId ?? "" });
  const salt = asHex(receipt.result_salt);
  const claimed = asHex(receipt.result_sha256);
  const recomputed = salt ? resultCommitment(released, salt) : null;
  checks.push({ name: "commitment", ok: !!recomputed && recomputed === claimed, expected: claimed ?? "", actual: recomputed ?? "" });
  checks.push({
    name: "chain_result",
    ok: !!recomputed && recomputed === chain.resultHash?.toLowerCase(),
    expected: chain.resultHash ?? "",
    actual: recomputed ?? "",
  });
  const attestation = settledAttestation(receipt);
  checks.push({
    name: "attestation",
    ok: attestation === chain.attestationHash?.toLowerCase(),
    expected: chain.attestationHash ?? "",
    actual: attestation,
  });
  let signer = "";
  try {
    signer = await receiptSigner(receipt);
  } catch {
    signer = "";
  }
  checks.push({
    name: "signature",
    ok: !!signer && custodians.some((c) => isAddressEqual(c as Hex, signer as Hex)),
    expected: custodians.join(", "),
    actual: signer,
  });
  return checks;
}
