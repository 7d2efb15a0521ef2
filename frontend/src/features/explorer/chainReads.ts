// How the explorer reads a node: Otterscan's `ots_` methods where the node offers them (anvil
// and Erigon do; `ots_getApiLevel` says so), since they answer "an address's transactions"
// without scanning blocks; otherwise plain JSON-RPC, with eth_getLogs asked in bounded block
// ranges (public nodes refuse or time out on 0..latest), halving a range the node refuses.
import { numberToHex, type Hex, type PublicClient, type RpcLog } from "viem";
import type { Space } from "../../api";

/** The Otterscan API level ots_searchTransactionsBefore needs (Otterscan 2's level 8). */
export const OTS_MIN_LEVEL = 8;
/** Blocks per eth_getLogs request; a range the node refuses is halved down to one block. */
export const LOG_RANGE = 5_000n;

type Rpc = (args: { method: string; params?: unknown[] }) => Promise<unknown>;

function rpc<T>(client: PublicClient, method: string, params: unknown[] = []): Promise<T> {
  return (client.request as unknown as Rpc)({ method, params }) as Promise<T>;
}

const levels = new WeakMap<PublicClient, Promise<number>>();

/** The node's Otterscan API level, 0 when it has none (asked once per client). */
export function otsApiLevel(client: PublicClient): Promise<number> {
  let level = levels.get(client);
  if (!level) {
    level = rpc<number>(client, "ots_getApiLevel").then(
      (n) => (typeof n === "number" ? n : 0),
      () => 0,
    );
    levels.set(client, level);
  }
  return level;
}

export interface AddressTransaction {
  hash: Hex;
  block: bigint;
  time: number;
  from: Hex;
  to: Hex | null;
  input: Hex;
}

interface OtsPage {
  txs: { hash: Hex; blockNumber: Hex; from: Hex; to: Hex | null; input: Hex; blockTimestamp?: Hex }[];
  receipts: { transactionHash: Hex; timestamp?: number | Hex }[];
  lastPage: boolean;
}

/** An address's latest transactions (to it or from it), newest first, up to about `limit`:
 * ots_searchTransactionsBefore pages back from the head, whole blocks at a time. */
export async function otsAddressTransactions(client: PublicClient, address: Hex, limit: number): Promise<AddressTransaction[]> {
  const out: AddressTransaction[] = [];
  let before = 0; // 0: from the head
  while (out.length < limit) {
    const page = await rpc<OtsPage>(client, "ots_searchTransactionsBefore", [address, before, Math.min(25, limit - out.length)]);
    const times = new Map(page.receipts.map((r) => [r.transactionHash, r.timestamp]));
    for (const tx of page.txs) {
      const time = times.get(tx.hash) ?? tx.blockTimestamp ?? 0;
      out.push({ hash: tx.hash, block: BigInt(tx.blockNumber), time: Number(time), from: tx.from, to: tx.to, input: tx.input });
    }
    if (page.lastPage || page.txs.length === 0) break;
    const oldest = Number(BigInt(page.txs[page.txs.length - 1].blockNumber));
    if (oldest <= 0 || oldest === before) break;
    before = oldest;
  }
  return out;
}

export interface LogFilter {
  address: Hex | Hex[];
  topics: (Hex | null)[];
}

/** The first block worth reading: the earliest deployment of Redlake's contracts. */
export function firstBlock(space: Space): bigint {
  return BigInt(space.from_block ?? 0);
}

/** eth_getLogs over [fromBlock, head] in ranges of at most LOG_RANGE blocks, oldest first. */
export async function logsInRanges(client: PublicClient, filter: LogFilter, fromBlock: bigint, toBlock?: bigint): Promise<RpcLog[]> {
  const head = toBlock ?? (await client.getBlockNumber());
  const logs: RpcLog[] = [];
  let span = LOG_RANGE;
  for (let start = fromBlock; start <= head; ) {
    const end = start + span - 1n < head ? start + span - 1n : head;
    try {
      logs.push(...(await rpc<RpcLog[]>(client, "eth_getLogs", [{ ...filter, fromBlock: numberToHex(start), toBlock: numberToHex(end) }])));
      start = end + 1n;
    } catch (error) {
      if (span === 1n) throw error;
      span = span / 2n; // the node refused the range (too many results, or a cap): ask for less
    }
  }
  return logs;
}
