import { useQuery } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { decodeEventLog, numberToHex, pad, type Abi, type Hex } from "viem";
import type { Space } from "../../api";
import { abis } from "../../generated/abis";
import { href } from "../../router";
import { ErrorBox, Loading, tokens } from "../common/ui";
import { show } from "./TxPage";
import { firstBlock, logsInRanges } from "./chainReads";
import { chainClient, useSpace } from "./space";

export interface TimelineEntry {
  event: string;
  block: bigint;
  tx: Hex;
  logIndex: number;
  args: Record<string, unknown>;
}

/** Every event of one agreement, oldest first: created, uses, settlements, refunds, reclaims. */
export async function agreementTimeline(space: Space, agreementId: bigint) {
  const client = chainClient(space);
  const address = space.contracts.UsageAgreements as Hex;
  const id = pad(numberToHex(agreementId), { size: 32 });
  // The agreement id is the first indexed topic of some events and the second of others.
  const [first, second] = await Promise.all([
    logsInRanges(client, { address, topics: [null, id] }, firstBlock(space)),
    logsInRanges(client, { address, topics: [null, null, id] }, firstBlock(space)),
  ]);
  const entries: TimelineEntry[] = [];
  const seen = new Set<string>();
  for (const log of [...first, ...second]) {
    // A log can match both queries (AgreementCreated's offer id equal to its agreement id).
    const key = `${log.transactionHash}-${log.logIndex}`;
    if (seen.has(key)) continue;
    seen.add(key);
    try {
      const decoded = decodeEventLog({ abi: abis.UsageAgreements as Abi, data: log.data, topics: log.topics as [Hex, ...Hex[]] });
      const args = (decoded.args ?? {}) as Record<string, unknown>;
      if (args.agreementId !== agreementId) continue; // an offer id or job id that merely shares the number
      entries.push({ event: decoded.eventName ?? "?", block: BigInt(log.blockNumber!), tx: log.transactionHash!, logIndex: Number(log.logIndex), args });
    } catch {
      // not an event of this ABI
    }
  }
  entries.sort((a, b) => (a.block === b.block ? a.logIndex - b.logIndex : a.block < b.block ? -1 : 1));
  const state = (await client.readContract({ address, abi: abis.UsageAgreements, functionName: "getAgreement", args: [agreementId] })) as Record<string, unknown>;
  return { entries, state };
}

export function AgreementTimeline({ id }: { id: string }) {
  const { t } = useTranslation();
  const space = useSpace();
  const data = useQuery({ queryKey: ["timeline", id], queryFn: () => agreementTimeline(space.data!, BigInt(id)), enabled: !!space.data });
  if (space.isPending || data.isPending) return <Loading />;
  if (space.error || data.error) return <ErrorBox error={space.error ?? data.error} />;
  const { entries, state } = data.data;
  const counts = entries.reduce<Record<string, number>>((c, e) => ({ ...c, [e.event]: (c[e.event] ?? 0) + 1 }), {});
  return (
    <>
      <h1>{t("Agreement #{{id}}", { id })}</h1>
      <dl className="facts" data-testid="agreement-state">
        <dt>{t("Consumer")}</dt>
        <dd className="mono">{String(state.consumer)}</dd>
        <dt>{t("Provider")}</dt>
        <dd className="mono">{String(state.provider)}</dd>
        <dt>{t("Calls bought / used / settled")}</dt>
        <dd>{String(state.callsBought)} / {String(state.callsUsed)} / {String(state.callsSettled)}</dd>
        <dt>{t("Escrow left")}</dt>
        <dd>{tokens(state.escrow as bigint)}</dd>
        <dt>{t("Pending")}</dt>
        <dd>{tokens(state.pending as bigint)}</dd>
        <dt>{t("Expires")}</dt>
        <dd>{new Date(Number(state.expiry) * 1000).toLocaleString()}</dd>
        <dt>{t("Events")}</dt>
        <dd>{Object.entries(counts).map(([k, v]) => `${k}: ${v}`).join(" · ")}</dd>
      </dl>
      <ol className="timeline" data-testid="timeline">
        {entries.map((e) => (
          <li key={`${e.tx}-${e.logIndex}`}>
            <strong>{e.event}</strong> · {t("block")} {e.block.toString()} · <a className="mono" href={href("explorer", "tx", e.tx)}>{e.tx.slice(0, 12)}…</a>
            {typeof e.args.jobId === "string" && (
              <>
                {" "}
                · <a href={href("explorer", "job", e.args.jobId)}>{t("job")}</a>
              </>
            )}
            {/* one text node per entry: a timeline of thousands of uses stays quick to draw */}
            <div className="mono small muted">{Object.entries(e.args).map(([k, v]) => `${k}=${show(v)}`).join("  ")}</div>
          </li>
        ))}
      </ol>
    </>
  );
}
