// Algorithm approval (providers): the algorithms consumers submitted for the provider's offers,
// with their code (the canonical bundle), its measurement and who asked; approve pins the
// measurement on chain, reject refuses it, revoke withdraws an approval. The API decides who may.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { apiClient, unwrap, type Page, type Schemas } from "../../api";
import { Empty, ErrorBox, Loading, Section, Status, TxLink } from "../common/ui";

export type Algorithm = Schemas["AlgorithmOutput"];
type Decision = "approve" | "reject" | "revoke";

export function algorithmsQuery() {
  return {
    queryKey: ["algorithms"],
    queryFn: () => unwrap(apiClient.GET("/api/algorithms/", { params: { query: { limit: 200 } } })) as Promise<Page<Algorithm>>,
  };
}

function decide(id: string, decision: Decision) {
  const path = { params: { path: { algorithm_id: id } }, body: { reason: "" } };
  if (decision === "approve") return unwrap(apiClient.POST("/api/algorithms/{algorithm_id}/approve/", path));
  if (decision === "reject") return unwrap(apiClient.POST("/api/algorithms/{algorithm_id}/reject/", path));
  return unwrap(apiClient.POST("/api/algorithms/{algorithm_id}/revoke/", path));
}

function AlgorithmCard({ algorithm }: { algorithm: Algorithm }) {
  const { t } = useTranslation();
  const queries = useQueryClient();
  const act = useMutation({
    mutationFn: (decision: Decision) => decide(algorithm.id, decision),
    onSuccess: () => queries.invalidateQueries({ queryKey: ["algorithms"] }),
  });
  const bundle = algorithm.bundle as { source?: string } | null;
  return (
    <article className="card" data-testid="algorithm" data-status={algorithm.status}>
      <h3>
        {algorithm.name || algorithm.kind} <Status value={algorithm.status} />
      </h3>
      <dl className="facts">
        <dt>{t("Asked by")}</dt>
        <dd>{algorithm.consumer}</dd>
        <dt>{t("Measurement")}</dt>
        <dd className="mono">{algorithm.measurement}</dd>
        <dt>{t("Bundle SHA-256")}</dt>
        <dd className="mono">{algorithm.bundle_sha256}</dd>
        <dt>{t("Transaction")}</dt>
        <dd>
          <TxLink hash={(algorithm.revoke_tx ?? algorithm.approve_tx)?.tx_hash} />
        </dd>
      </dl>
      <pre className="json" aria-label={t("Code")}>{bundle?.source ?? JSON.stringify(algorithm.bundle, null, 2)}</pre>
      <p>
        {algorithm.status === "pending" && (
          <>
            <button onClick={() => act.mutate("approve")} disabled={act.isPending}>
              {t("Approve")}
            </button>{" "}
            <button onClick={() => act.mutate("reject")} disabled={act.isPending}>
              {t("Reject")}
            </button>
          </>
        )}
        {algorithm.status === "approved" && (
          <button onClick={() => act.mutate("revoke")} disabled={act.isPending}>
            {t("Revoke")}
          </button>
        )}
      </p>
      <ErrorBox error={act.error} />
    </article>
  );
}

export function Algorithms() {
  const { t } = useTranslation();
  const list = useQuery({ ...algorithmsQuery(), refetchInterval: 3000 });
  if (list.isPending) return <Loading />;
  if (list.error) return <ErrorBox error={list.error} />;
  const waiting = list.data.results.filter((a) => a.status === "pending");
  const decided = list.data.results.filter((a) => a.status !== "pending");
  return (
    <>
      <h1>{t("Algorithm approval")}</h1>
      <Section title={t("Awaiting your approval")} id="awaiting">
        {waiting.length ? waiting.map((a) => <AlgorithmCard key={a.id} algorithm={a} />) : <Empty>{t("No algorithm awaits your approval.")}</Empty>}
      </Section>
      <Section title={t("Decided")} id="decided">
        {decided.length ? decided.map((a) => <AlgorithmCard key={a.id} algorithm={a} />) : <Empty>{t("None yet.")}</Empty>}
      </Section>
    </>
  );
}
