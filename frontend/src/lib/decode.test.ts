import { describe, expect, it } from "vitest";
import { encodeErrorResult, encodeEventTopics, encodeFunctionData, encodeAbiParameters, type Hex } from "viem";
import { abis } from "../generated/abis";
import { contractAt, decodeCall, decodeLogs, decodeRevert, merkleProof, merkleRoot, receiptLeaf, splitJobId } from "./decode";

const book = { UsageAgreements: "0x00000000000000000000000000000000000000aa", DevToken: "0x00000000000000000000000000000000000000bb" };
const h = (n: number) => `0x${n.toString(16).padStart(64, "0")}` as Hex;

describe("decoding Redlake transactions", () => {
  it("names the function and its arguments", () => {
    const data = encodeFunctionData({ abi: abis.UsageAgreements, functionName: "settle", args: [h(1), h(2), h(3)] });
    const call = decodeCall(data, contractAt("0x00000000000000000000000000000000000000AA", book));
    expect(call).toEqual({ contract: "UsageAgreements", functionName: "settle", args: { jobId: h(1), resultHash: h(2), attestationHash: h(3) } });
  });
  it("finds the contract by trying each ABI when the address is unknown", () => {
    const data = encodeFunctionData({ abi: abis.UsageAgreements, functionName: "acceptOffer", args: [4n, 10] });
    expect(decodeCall(data, null).functionName).toBe("acceptOffer");
  });
  it("decodes events with their indexed and data arguments", () => {
    const topics = encodeEventTopics({ abi: abis.UsageAgreements, eventName: "JobSettled", args: { jobId: h(9), agreementId: 5n } });
    const data = encodeAbiParameters([{ type: "bytes32" }, { type: "bytes32" }], [h(2), h(3)]);
    const [event] = decodeLogs([{ address: book.UsageAgreements as Hex, topics: topics as [Hex, ...Hex[]], data, logIndex: 0 }], book);
    expect(event.eventName).toBe("JobSettled");
    expect(event.args).toMatchObject({ jobId: h(9), agreementId: 5n, resultHash: h(2), attestationHash: h(3) });
  });
  it("decodes a custom error into its name and values", () => {
    const withCalls = abis.UsageAgreements.find((x) => x.type === "error" && x.name === "CallsExhausted");
    expect(withCalls).toBeTruthy();
    const data = encodeErrorResult({ abi: abis.UsageAgreements, errorName: "CallsExhausted", args: [7n, 3, 3] });
    expect(decodeRevert(data)).toMatch(/^CallsExhausted\(7/);
    expect(decodeRevert("0x")).toBe("reverted without a reason");
  });
  it("splits a job id into agreement and nonce", () => {
    expect(splitJobId(h((5 << 20) + 7))).toEqual({ agreementId: 0n, nonce: BigInt((5 << 20) + 7) });
    expect(splitJobId(`0x${(5n << 128n | 7n).toString(16).padStart(64, "0")}` as Hex)).toEqual({ agreementId: 5n, nonce: 7n });
  });
  it("proves a receipt leaf into a sorted-pair Merkle root", () => {
    const leaves = [1, 2, 3, 4, 5].map((k) => receiptLeaf(h(k), h(k + 10), h(k + 20)));
    const root = merkleRoot(leaves[0], merkleProof(leaves, 0));
    for (let k = 0; k < leaves.length; k++) expect(merkleRoot(leaves[k], merkleProof(leaves, k))).toBe(root);
    expect(merkleRoot(receiptLeaf(h(1), h(99), h(21)), merkleProof(leaves, 0))).not.toBe(root);
  });
});
