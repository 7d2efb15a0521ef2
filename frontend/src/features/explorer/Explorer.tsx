import { useState } from "react";
import { useQuery } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import type { Hex, Transaction } from "viem";
import type { Space } from "../../api";
import { contractAt, decodeCall, type DecodedCall } from "../../lib/decode";
import { href } from "../../router";
import { Empty, ErrorBox, Loading } from "../common/ui";
import { OTS_MIN_LEVEL, otsAddressTransactions, otsApiLevel } from "./chainReads";
import { chainClient, useSpace } from "./space";

export const LATEST_BLOCKS = 200n;

export interface Row {
  hash: Hex;
  block: bigint;
  time: number;
  from: string;
  to: string | null;
  call: DecodedCall;
}

/** Transactions to Redlake's contracts per contract through Otterscan's index, when the node has one. */
export const OTS_PER_CONTRACT = 100;

/** The latest transactions that touch Redlake's contracts, decoded (newest first): from the
 * node's Otterscan index (the last OTS_PER_CONTRACT per contract) where it offers one, else
 * from the last `blocks` blocks. */
export async function latestRedlakeTransactions(space: Space, blocks: bigint): Promise<Row[]> {
  const client = chainClient(space);
  if ((await otsApiLevel(client)) >= OTS_MIN_LEVEL) {
    const addresses = Object.values(space.contracts) as Hex[];
    const found = await Promise.all(addresses.map((address) => otsAddressTransactions(client, address, OTS_PER_CONTRACT)));
    const rows = new Map<Hex, Row>();
    for (const tx of found.flat()) {
      const contract = contractAt(tx.to, space.contracts);
      if (!contract || rows.has(tx.hash)) continue; // sent by a contract address, or listed twice
      rows.set(tx.hash, { hash: tx.hash, block: tx.block, time: tx.time, from: tx.from, to: tx.to, call: decodeCall(tx.input, contract) });
    }
    return [...rows.values()].sort((a, b) => (a.block === b.block ? 0 : a.block > b.block ? -1 : 1));
  }
  const head = await client.getBlockNumber();
  const from = head > blocks ? head - blocks + 1n : 0n;
  const numbers: bigint[] = [];
  for (let n = head; n >= from; n--) numbers.push(n);
  const found = await Promise.all(numbers.map((blockNumber) => client.getBlock({ blockNumber, includeTransactions: true })));
  const rows: Row[] = [];
  for (const block of found) {
    for (const tx of block.transactions as Transaction[]) {
      const contract = contractAt(tx.to, space.contracts);
      if (!contract) continue;
      rows.push({ hash: tx.hash, block: block.number!, time: Number(block.timestamp), from: tx.from, to: tx.to, call: decodeCall(tx.input, contract) });
    }
  }
  return rows;
}

function matches(row: Row, filters: Record<string, string>): boolean {
  const args = Object.values(row.call.args).map((v) => String(v).toLowerCase());
  if (filters.contract && row.call.contract !== filters.contract) return false;
  if (filters.fn && row.call.functionName !== filters.fn) return false;
  if (filters.address && row.from.toLowerCase() !== filters.address.toLowerCase() && !args.includes(filters.address.toLowerCase())) return false;
  if (filters.agreement) {
    const id = filters.agreement.trim();
    const jobAgreement = typeof row.call.args.jobId === "string" ? (BigInt(row.call.args.jobId) >> 128n).toString() : null;
    if (String(row.call.args.agreementId ?? "") !== id && jobAgreement !== id) return false;
  }
  if (filters.dataset && !args.includes(filters.dataset.toLowerCase())) return false;
  if (filters.since && row.time * 1000 < Date.parse(filters.since)) return false;
  return true;
}

export function Explorer() {
  const { t } = useTranslation();
  const space = useSpace();
  const [filters, setFilters] = useState<Record<string, string>>({});
  const rows = useQuery({
    queryKey: ["latest-txs", space.data?.rpc_url],
    queryFn: () => latestRedlakeTransactions(space.data!, LATEST_BLOCKS),
    enabled: !!space.data?.rpc_url,
    refetchInterval: 5000,
  });
  if (space.isPending) return <Loading />;
  if (space.error) return <ErrorBox error={space.error} />;
  const shown = (rows.data ?? []).filter((r) => matches(r, filters));
  const functions = [...new Set((rows.data ?? []).map((r) => r.call.functionName).filter(Boolean))] as string[];
  const set = (key: string) => (e: { target: { value: string } }) => setFilters((f) => ({ ...f, [key]: e.target.value }));
  return (
    <>
      <h1>{t("Chain explorer")}</h1>
      <p className="muted">
        {t("Read from the chain")} ({space.data.rpc_url}, {t("chain id")} {space.data.chain_id}). {t("Every number here is read from the chain unless marked off-chain.")}
      </p>
      <dl className="facts">
        {Object.entries(space.data.contracts).map(([name, address]) => (
          <div key={name}>
            <dt>{name}</dt>
            <dd className="mono">{address}</dd>
          </div>
        ))}
        <dt>{t("Custodians")}</dt>
        <dd className="mono">{space.data.custodians.map((c) => c.address).join(", ") || "—"}</dd>
      </dl>
      <p>
        <a href={href("explorer", "reconcile")}>{t("Reconciliation report")}</a>
      </p>
      <form className="filters" onSubmit={(e) => e.preventDefault()} aria-label={t("Filters")}>
        <label>
          {t("Contract")}{" "}
          <select value={filters.contract ?? ""} onChange={set("contract")}>
            <option value="">{t("any")}</option>
            {Object.keys(space.data.contracts).map((c) => (
              <option key={c}>{c}</option>
            ))}
          </select>
        </label>
        <label>
          {t("Function")}{" "}
          <select value={filters.fn ?? ""} onChange={set("fn")}>
            <option value="">{t("any")}</option>
            {functions.map((f) => (
              <option key={f}>{f}</option>
            ))}
          </select>
        </label>
        <label>
          {t("Agreement")} <input size={5} value={filters.agreement ?? ""} onChange={set("agreement")} />
        </label>
        <label>
          {t("Address (provider or consumer)")} <input size={20} value={filters.address ?? ""} onChange={set("address")} />
        </label>
        <label>
          {t("Dataset id (bytes32)")} <input size={20} value={filters.dataset ?? ""} onChange={set("dataset")} />
        </label>
        <label>
          {t("Since")} <input type="datetime-local" value={filters.since ?? ""} onChange={set("since")} />
        </label>
      </form>
      {rows.isPending ? <Loading /> : rows.error ? <ErrorBox error={rows.error} /> : shown.length === 0 ? <Empty>{t("No Redlake transactions in the latest blocks.")}</Empty> : (
        <table data-testid="latest-txs">
          <thead>
            <tr><th>{t("Block")}</th><th>{t("Time")}</th><th>{t("Transaction")}</th><th>{t("Function")}</th><th>{t("From")}</th></tr>
          </thead>
          <tbody>
            {shown.map((r) => (
              <tr key={r.hash}>
                <td>{r.block.toString()}</td>
                <td>{new Date(r.time * 1000).toLocaleString()}</td>
                <td><a className="mono" href={href("explorer", "tx", r.hash)}>{r.hash.slice(0, 12)}…</a></td>
                <td>{r.call.contract}.{r.call.functionName ?? "?"}</td>
                <td className="mono">{r.from.slice(0, 10)}…</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  );
}
