// Reading Redlake's transactions: which function, with which arguments, which events, and why a
// reverted one failed (its custom error), from the contracts' ABIs alone.
import {
  BaseError,
  ContractFunctionRevertedError,
  decodeErrorResult,
  decodeEventLog,
  decodeFunctionData,
  encodeAbiParameters,
  keccak256,
  concat,
  type Abi,
  type Hex,
  type Log,
} from "viem";
import { abis } from "../generated/abis";

export type ContractName = keyof typeof abis;

export interface DecodedCall {
  contract: ContractName | null;
  functionName: string | null;
  args: Record<string, unknown>;
}

export interface DecodedEvent {
  contract: ContractName | null;
  eventName: string;
  args: Record<string, unknown>;
  logIndex: number | null;
}

function named(abiInputs: readonly { name?: string }[] | undefined, values: readonly unknown[] | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  (values ?? []).forEach((value, k) => {
    out[abiInputs?.[k]?.name || `arg${k}`] = value;
  });
  return out;
}

/** The contract whose address is `to` (case-insensitively), by the space's address book. */
export function contractAt(address: string | null | undefined, book: Record<string, string>): ContractName | null {
  if (!address) return null;
  const hit = Object.entries(book).find(([, a]) => a.toLowerCase() === address.toLowerCase());
  return hit && hit[0] in abis ? (hit[0] as ContractName) : null;
}

export function decodeCall(input: Hex, contract: ContractName | null): DecodedCall {
  const candidates = contract ? [contract] : (Object.keys(abis) as ContractName[]);
  for (const name of candidates) {
    const abi = abis[name] as Abi;
    try {
      const { functionName, args } = decodeFunctionData({ abi, data: input });
      const item = abi.find((x) => x.type === "function" && x.name === functionName && (x.inputs?.length ?? 0) === (args?.length ?? 0));
      return { contract: name, functionName, args: named(item && "inputs" in item ? item.inputs : undefined, args) };
    } catch {
      // not this contract's function
    }
  }
  return { contract, functionName: null, args: {} };
}

export function decodeLogs(logs: readonly Pick<Log, "address" | "data" | "topics" | "logIndex">[], book: Record<string, string>): DecodedEvent[] {
  const out: DecodedEvent[] = [];
  for (const log of logs) {
    const contract = contractAt(log.address, book);
    const candidates = contract ? [contract] : (Object.keys(abis) as ContractName[]);
    for (const name of candidates) {
      try {
        const decoded = decodeEventLog({ abi: abis[name] as Abi, data: log.data, topics: log.topics as [Hex, ...Hex[]] });
        out.push({
          contract: name,
          eventName: decoded.eventName ?? "?",
          args: (decoded.args ?? {}) as Record<string, unknown>,
          logIndex: log.logIndex ?? null,
        });
        break;
      } catch {
        // not this contract's event
      }
    }
  }
  return out;
}

/** A revert's custom error by name and arguments (or Error(string) / Panic), from its return data. */
export function decodeRevert(data: Hex): string {
  if (!data || data === "0x") return "reverted without a reason";
  for (const name of Object.keys(abis) as ContractName[]) {
    try {
      const { errorName, args } = decodeErrorResult({ abi: abis[name] as Abi, data });
      return `${errorName}(${(args ?? []).map(String).join(", ")})`;
    } catch {
      // not this contract's error
    }
  }
  try {
    const { errorName, args } = decodeErrorResult({ abi: [], data });
    return `${errorName}(${(args ?? []).map(String).join(", ")})`;
  } catch {
    return `unknown error ${data.slice(0, 10)}`;
  }
}

/** The revert reason out of a failed eth_call replay (viem wraps it several layers deep). */
export function revertReasonOf(error: unknown): string {
  if (error instanceof BaseError) {
    const reverted = error.walk((e) => e instanceof ContractFunctionRevertedError);
    if (reverted instanceof ContractFunctionRevertedError && reverted.raw) return decodeRevert(reverted.raw);
    const withData = error.walk((e) => typeof (e as { data?: unknown }).data === "string") as { data?: Hex } | null;
    if (withData?.data) return decodeRevert(withData.data);
    return error.shortMessage;
  }
  return String(error);
}

/** A job id packs (agreementId << 128) | nonce (UsageAgreements.jobIdOf). */
export function splitJobId(jobId: Hex): { agreementId: bigint; nonce: bigint } {
  const value = BigInt(jobId);
  return { agreementId: value >> 128n, nonce: value & ((1n << 128n) - 1n) };
}

/** receiptLeaf(jobId, resultHash, attestationHash) = keccak256(abi.encode(...)). */
export function receiptLeaf(jobId: Hex, resultHash: Hex, attestationHash: Hex): Hex {
  return keccak256(encodeAbiParameters([{ type: "bytes32" }, { type: "bytes32" }, { type: "bytes32" }], [jobId, resultHash, attestationHash]));
}

/** OpenZeppelin's MerkleProof over sorted pairs: the root a leaf and its proof lead to. */
export function merkleRoot(leaf: Hex, proof: readonly Hex[]): Hex {
  return proof.reduce<Hex>((node, sibling) => {
    const [a, b] = BigInt(node) < BigInt(sibling) ? [node, sibling] : [sibling, node];
    return keccak256(concat([a, b]));
  }, leaf);
}

/** A sorted-pair Merkle tree's proof for leaf `index` (for batches whose leaves we know). */
export function merkleProof(leaves: readonly Hex[], index: number): Hex[] {
  const proof: Hex[] = [];
  let level = [...leaves];
  let i = index;
  while (level.length > 1) {
    const next: Hex[] = [];
    for (let k = 0; k < level.length; k += 2) {
      if (k + 1 === level.length) next.push(level[k]);
      else {
        const [a, b] = BigInt(level[k]) < BigInt(level[k + 1]) ? [level[k], level[k + 1]] : [level[k + 1], level[k]];
        next.push(keccak256(concat([a, b])));
      }
    }
    const sibling = level[i ^ 1];
    if (sibling !== undefined) proof.push(sibling);
    level = next;
    i = i >> 1;
  }
  return proof;
}
