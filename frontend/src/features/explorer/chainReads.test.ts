import { http as rpcTransport, createPublicClient, type Hex } from "viem";
import { http, HttpResponse } from "msw";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { LOG_RANGE, logsInRanges, otsAddressTransactions, otsApiLevel } from "./chainReads";

// A JSON-RPC node played by msw: each test says which methods it answers and how.
const NODE = "http://node.test/";
const server = setupServer();
beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
afterEach(() => server.resetHandlers());
afterAll(() => server.close());

type Call = { method: string; params: unknown[] };
function node(answer: (call: Call) => unknown) {
  const calls: Call[] = [];
  server.use(
    http.post(NODE, async ({ request }) => {
      const call = (await request.json()) as Call & { id: number };
      calls.push(call);
      try {
        return HttpResponse.json({ jsonrpc: "2.0", id: call.id, result: answer(call) });
      } catch (error) {
        return HttpResponse.json({ jsonrpc: "2.0", id: call.id, error: { code: -32005, message: String(error) } });
      }
    }),
  );
  return calls;
}

const client = () => createPublicClient({ transport: rpcTransport(NODE, { retryCount: 0 }) });
const ADDRESS = "0x00000000000000000000000000000000000000aa" as Hex;

describe("ots_getApiLevel probe", () => {
  it("reads the level of a node that has Otterscan's API", async () => {
    node(() => 8);
    expect(await otsApiLevel(client())).toBe(8);
  });
  it("is 0 on a node without it", async () => {
    node(({ method }) => {
      throw new Error(`the method ${method} does not exist`);
    });
    expect(await otsApiLevel(client())).toBe(0);
  });
});

describe("eth_getLogs in bounded ranges", () => {
  it("covers every block once, in ranges of at most LOG_RANGE, halving what the node refuses", async () => {
    const calls = node(({ method, params }) => {
      if (method === "eth_blockNumber") return "0x5dc0"; // 24,000
      const { fromBlock, toBlock } = params[0] as { fromBlock: Hex; toBlock: Hex };
      if (BigInt(toBlock) - BigInt(fromBlock) + 1n > 2_000n) throw new Error("query returned more than 10000 results");
      return [{ blockNumber: fromBlock }];
    });
    const logs = await logsInRanges(client(), { address: ADDRESS, topics: [null] }, 100n);
    const served = calls
      .filter((c) => c.method === "eth_getLogs")
      .map((c) => c.params[0] as { fromBlock: Hex; toBlock: Hex })
      .map((r) => [BigInt(r.fromBlock), BigInt(r.toBlock)] as const);
    const accepted = served.filter(([from, to]) => to - from + 1n <= 2_000n);
    expect(served.every(([from, to]) => to - from + 1n <= LOG_RANGE)).toBe(true);
    expect(accepted[0][0]).toBe(100n);
    expect(accepted[accepted.length - 1][1]).toBe(24_000n);
    for (let k = 1; k < accepted.length; k++) expect(accepted[k][0]).toBe(accepted[k - 1][1] + 1n);
    expect(logs).toHaveLength(accepted.length);
  });
});

describe("ots_searchTransactionsBefore", () => {
  it("pages back from the head, each page before the oldest block seen", async () => {
    const tx = (n: number) => ({ hash: `0x${n.toString(16).padStart(64, "0")}`, blockNumber: `0x${n.toString(16)}`, from: ADDRESS, to: ADDRESS, input: "0x" });
    const calls = node(({ params }) => {
      const before = params[1] as number;
      if (before === 0) return { txs: [tx(30), tx(29)], receipts: [{ transactionHash: tx(30).hash, timestamp: 1_700_000_030 }], lastPage: false, firstPage: true };
      return { txs: [tx(12)], receipts: [], lastPage: true, firstPage: false };
    });
    const found = await otsAddressTransactions(client(), ADDRESS, 100);
    expect(found.map((t) => t.block)).toEqual([30n, 29n, 12n]);
    expect(found[0].time).toBe(1_700_000_030);
    expect(calls.map((c) => c.params[1])).toEqual([0, 29]);
  });
});
