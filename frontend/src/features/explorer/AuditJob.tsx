import { useState } from "react";
import { useQuery } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { decodeEventLog, encodeEventTopics, isAddressEqual, recoverTypedDataAddress, type Abi, type Hex } from "viem";
import { apiClient, unwrap, type AuditJob as PlatformJob, type Page, type Space } from "../../api";
import { abis } from "../../generated/abis";
import { decodeCall, merkleRoot, receiptLeaf, splitJobId } from "../../lib/decode";
import { batchProof, readShared, settledAttestation, verifyShared, type Check } from "../../lib/verify";
import { href } from "../../router";
import { ErrorBox, Loading, Section, Status } from "../common/ui";
import { Args } from "./TxPage";
import { firstBlock, logsInRanges } from "./chainReads";
import { chainClient, useSpace } from "./space";

const USAGE_TYPES = {
  Usage: [
    { name: "agreementId", type: "uint256" },
    { name: "jobId", type: "bytes32" },
    { name: "purpose", type: "bytes32" },
    { name: "operation", type: "bytes32" },
    { name: "paramsHash", type: "bytes32" },
    { name: "privacyLoss", type: "uint64" },
    { name: "nonce", type: "uint256" },
    { name: "deadline", type: "uint256" },
  ],
} as const;

interface Found {
  event: string;
  tx: Hex;
  block: bigint;
  args: Record<string, unknown>;
}

/** What the chain holds about one job: its events, the signed use, the consumer's signature. */
export async function jobOnChain(space: Space, jobId: Hex) {
  const client = chainClient(space);
  const address = space.contracts.UsageAgreements as Hex;
  const abi = abis.UsageAgreements as Abi;
  const from = firstBlock(space);
  const logs = await logsInRanges(client, { address, topics: [null, jobId] }, from);
  const batchTopic = encodeEventTopics({ abi: abis.UsageAgreements, eventName: "BatchSettled" })[0];
  const batches = await logsInRanges(client, { address, topics: [batchTopic] }, from);
  const found: Found[] = [];
  for (const log of [...logs, ...batches]) {
    try {
      const d = decodeEventLog({ abi, data: log.data, topics: log.topics as [Hex, ...Hex[]] });
      const args = (d.args ?? {}) as Record<string, unknown>;
      if (d.eventName === "BatchSettled" && !(args.jobIds as Hex[]).some((j) => j.toLowerCase() === jobId.toLowerCase())) continue;
      if (d.eventName !== "BatchSettled" && String(args.jobId).toLowerCase() !== jobId.toLowerCase()) continue;
      found.push({ event: d.eventName ?? "?", tx: log.transactionHash!, block: BigInt(log.blockNumber!), args });
    } catch {
      // another event signature sharing the topic layout
    }
  }
  const usage = (await client.readContract({ address, abi: abis.UsageAgreements, functionName: "getUsage", args: [jobId] })) as readonly [bigint, number, bigint];
  const { agreementId, nonce } = splitJobId(jobId);
  const agreement = (await client.readContract({ address, abi: abis.UsageAgreements, functionName: "getAgreement", args: [agreementId] })) as { consumer: Hex };
  let signer: Hex | null = null;
  const recorded = found.find((f) => f.event === "UsageRecorded");
  if (recorded) {
    const tx = await client.getTransaction({ hash: recorded.tx });
    const call = decodeCall(tx.input, "UsageAgreements");
    const a = call.args as { purpose: Hex; operation: Hex; paramsHash: Hex; privacyLoss: bigint; deadline: bigint; consumerSignature: Hex };
    signer = await recoverTypedDataAddress({
      domain: { name: "Redlake UsageAgreements", version: "1", chainId: space.chain_id, verifyingContract: address },
      types: USAGE_TYPES,
      primaryType: "Usage",
      message: { agreementId, jobId, purpose: a.purpose, operation: a.operation, paramsHash: a.paramsHash, privacyLoss: a.privacyLoss, nonce, deadline: a.deadline },
      signature: a.consumerSignature,
    });
  }
  return { found, usage: { agreementId: usage[0], status: usage[1], privacyLoss: usage[2] }, consumer: agreement.consumer, signer };
}

const JOB_STATUS = ["none", "recorded", "settled", "refunded"];

export function AuditJob({ jobId }: { jobId: Hex }) {
  const { t } = useTranslation();
  const space = useSpace();
  const chain = useQuery({ queryKey: ["job-chain", jobId], queryFn: () => jobOnChain(space.data!, jobId), enabled: !!space.data });
  const platform = useQuery({
    queryKey: ["audit-job", jobId],
    queryFn: () => unwrap(apiClient.GET("/api/audit/jobs/", { params: { query: { chain_job_id: jobId } } })) as Promise<Page<PlatformJob>>,
    retry: false,
  });
  const [shared, setShared] = useState("");
  const [proof, setProof] = useState("");
  const [checks, setChecks] = useState<Check[] | null>(null);
  const [inclusion, setInclusion] = useState<boolean | null>(null);

  if (space.isPending || chain.isPending) return <Loading />;
  if (space.error || chain.error) return <ErrorBox error={space.error ?? chain.error} />;
  const { found, usage, consumer, signer } = chain.data;
  const settled = found.find((f) => f.event === "JobSettled");
  const batch = found.find((f) => f.event === "BatchSettled");
  const custodians = space.data.custodians.map((c) => c.address);
  const row = platform.data?.results[0];

  async function verify() {
    let facts = { jobId, resultHash: (settled?.args.resultHash as Hex) ?? null, attestationHash: (settled?.args.attestationHash as Hex) ?? null };
    if (batch) {
      // A batched settlement pins no hashes per job: the leaf recomputed from the receipt must lead
      // to the batch's root, on chain (verifyReceipt) and here. Once it does, the chain holds the
      // receipt's commitment and attestation hash, and the checks below compare against them.
      let included = false;
      try {
        const { receipt } = readShared(shared);
        const carried = batchProof(receipt);
        const path = proof.trim() ? (JSON.parse(proof) as Hex[]) : (carried?.proof ?? []);
        const commitment = receipt.result_sha256 as Hex;
        const attestation = settledAttestation(receipt);
        const leaf = receiptLeaf(jobId, commitment, attestation);
        included = (await chainClient(space.data!).readContract({
          address: space.data!.contracts.UsageAgreements as Hex,
          abi: abis.UsageAgreements,
          functionName: "verifyReceipt",
          args: [batch.args.batchId as bigint, leaf, path],
        })) as boolean;
        included = included && merkleRoot(leaf, path) === (batch.args.root as Hex);
        if (included) facts = { jobId, resultHash: commitment, attestationHash: attestation };
      } catch {
        included = false;
      }
      setInclusion(included);
    }
    setChecks(await verifyShared(shared, facts, custodians));
  }

  return (
    <>
      <h1>
        {t("Job")} <span className="mono small">{jobId}</span>
      </h1>
      <Section title={t("Usage record (on chain)")} id="usage">
        <dl className="facts">
          <dt>{t("Agreement")}</dt>
          <dd>
            <a href={href("explorer", "agreement", usage.agreementId.toString())}>#{usage.agreementId.toString()}</a>
          </dd>
          <dt>{t("Status")}</dt>
          <dd data-testid="chain-status">{t(JOB_STATUS[usage.status] ?? String(usage.status))}</dd>
          <dt>{t("Privacy loss (nano-ρ)")}</dt>
          <dd>{usage.privacyLoss.toString()}</dd>
          <dt>{t("Consumer's signature recovered")}</dt>
          <dd className="mono" data-testid="signer">
            {signer ?? "—"}{" "}
            {signer && (isAddressEqual(signer, consumer) ? <span className="ok">✔ {t("the agreement's consumer")}</span> : <span className="error">✘ {t("not the agreement's consumer")} ({consumer})</span>)}
          </dd>
        </dl>
        <ol>
          {found.map((f) => (
            <li key={`${f.tx}-${f.event}`}>
              <strong>{f.event}</strong> · <a className="mono" href={href("explorer", "tx", f.tx)}>{f.tx.slice(0, 12)}…</a>
              <Args args={f.args} />
            </li>
          ))}
        </ol>
      </Section>
      <Section title={t("The platform's record (off-chain)")} id="platform">
        {platform.isPending ? <Loading /> : platform.error ? <ErrorBox error={platform.error} /> : !row ? <p className="muted">{t("The platform shows no job with this id.")}</p> : (
          <dl className="facts off-chain">
            <dt>{t("Status")}</dt>
            <dd><Status value={row.status} /></dd>
            <dt>{t("Operation")}</dt>
            <dd>{row.operation} · {row.purpose} · ε {row.epsilon}</dd>
            <dt>{t("Result commitment")}</dt>
            <dd className="mono">{row.result_hash}</dd>
            <dt>{t("Receipt (salt withheld)")}</dt>
            <dd><pre className="json">{JSON.stringify(row.receipt, null, 2)}</pre></dd>
          </dl>
        )}
      </Section>
      <Section title={t("Verify a shared receipt")} id="verify">
        <p className="muted">{t("Paste the receipt the consumer shared (their job's result and receipt).")}</p>
        <label htmlFor="shared">{t("Shared receipt")}</label>
        <textarea id="shared" className="json wide" rows={8} value={shared} onChange={(e) => setShared(e.target.value)} />
        {batch && (
          <>
            <label htmlFor="proof">{t("Merkle proof (JSON array of hashes; empty: the one the receipt carries)")}</label>
            <textarea id="proof" className="json wide" rows={2} value={proof} onChange={(e) => setProof(e.target.value)} />
          </>
        )}
        <p>
          <button type="button" onClick={verify} disabled={!shared.trim()}>
            {t("Verify")}
          </button>
        </p>
        {checks && (
          <ul className="checks" data-testid="checks" data-ok={checks.every((c) => c.ok) && inclusion !== false ? "true" : "false"}>
            {checks.map((c) => (
              <li key={c.name} className={c.ok ? "ok" : "error"} data-check={c.name} data-ok={String(c.ok)}>
                {c.ok ? "✔" : "✘"} {t(`check.${c.name}`)}
                {!c.ok && c.expected !== undefined && (
                  <div className="mono small">
                    {t("expected")} {c.expected || "—"} · {t("found")} {c.actual || "—"}
                  </div>
                )}
              </li>
            ))}
            {inclusion !== null && (
              <li className={inclusion ? "ok" : "error"} data-check="merkle" data-ok={String(inclusion)}>
                {inclusion ? "✔" : "✘"} {t("check.merkle")}
              </li>
            )}
          </ul>
        )}
      </Section>
    </>
  );
}
