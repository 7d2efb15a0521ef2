import { useQuery } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import type { Hex } from "viem";
import type { Space } from "../../api";
import { contractAt, decodeCall, decodeLogs, revertReasonOf } from "../../lib/decode";
import { ErrorBox, Loading } from "../common/ui";
import { chainClient, useSpace } from "./space";

export function show(value: unknown): string {
  if (typeof value === "bigint") return value.toString();
  if (Array.isArray(value)) return `[${value.map(show).join(", ")}]`;
  if (value && typeof value === "object") return `{${Object.entries(value).map(([k, v]) => `${k}: ${show(v)}`).join(", ")}}`;
  return String(value);
}

export function Args({ args }: { args: Record<string, unknown> }) {
  return (
    <dl className="args">
      {Object.entries(args).map(([k, v]) => (
        <div key={k}>
          <dt>{k}</dt>
          <dd className="mono">{show(v)}</dd>
        </div>
      ))}
    </dl>
  );
}

export async function readTransaction(space: Space, hash: Hex) {
  const client = chainClient(space);
  const [tx, receipt] = await Promise.all([client.getTransaction({ hash }), client.getTransactionReceipt({ hash })]);
  const block = await client.getBlock({ blockNumber: receipt.blockNumber });
  const contract = contractAt(tx.to, space.contracts);
  let revert: string | null = null;
  if (receipt.status === "reverted") {
    // Replay the call at its block to learn why it failed (the receipt holds no reason).
    try {
      await client.call({ to: tx.to!, data: tx.input, account: tx.from, blockNumber: receipt.blockNumber, gas: tx.gas, value: tx.value });
      revert = "reverted (the replay did not)";
    } catch (error) {
      revert = revertReasonOf(error);
    }
  }
  return { tx, receipt, time: Number(block.timestamp), call: decodeCall(tx.input, contract), events: decodeLogs(receipt.logs, space.contracts), revert };
}

export function TxPage({ hash }: { hash: Hex }) {
  const { t } = useTranslation();
  const space = useSpace();
  const data = useQuery({ queryKey: ["tx", hash], queryFn: () => readTransaction(space.data!, hash), enabled: !!space.data });
  if (space.isPending || data.isPending) return <Loading />;
  if (space.error || data.error) return <ErrorBox error={space.error ?? data.error} />;
  const { tx, receipt, call, events, revert, time } = data.data;
  return (
    <>
      <h1>
        {t("Transaction")} <span className="mono small">{hash}</span>
      </h1>
      <dl className="facts" data-testid="tx" data-status={receipt.status}>
        <dt>{t("Status")}</dt>
        <dd className={receipt.status === "success" ? "ok" : "error"}>{receipt.status === "success" ? t("success") : t("reverted")}</dd>
        {revert && (
          <>
            <dt>{t("Revert reason")}</dt>
            <dd className="error mono" data-testid="revert">{revert}</dd>
          </>
        )}
        <dt>{t("Block")}</dt>
        <dd>{receipt.blockNumber.toString()} · {new Date(time * 1000).toLocaleString()}</dd>
        <dt>{t("From")}</dt>
        <dd className="mono">{tx.from}</dd>
        <dt>{t("To")}</dt>
        <dd className="mono">{tx.to} {call.contract && `(${call.contract})`}</dd>
        <dt>{t("Gas used")}</dt>
        <dd>{receipt.gasUsed.toString()}</dd>
      </dl>
      <h2 data-testid="function">{call.functionName ? `${call.contract}.${call.functionName}` : t("Unknown function")}</h2>
      <Args args={call.args} />
      <h2>{t("Events")}</h2>
      <ol data-testid="events">
        {events.map((e, k) => (
          <li key={k}>
            <strong>{e.contract}.{e.eventName}</strong>
            <Args args={e.args} />
          </li>
        ))}
      </ol>
    </>
  );
}
