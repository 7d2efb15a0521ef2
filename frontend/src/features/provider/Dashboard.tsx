import { lazy, Suspense } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { apiClient, narrowed, unwrap, type AuditJob, type Dataset, type Offer, type Page } from "../../api";
import { href } from "../../router";
import { algorithmsQuery } from "./Algorithms";
import { Empty, ErrorBox, Loading, Section, Status, TxLink, tokens } from "../common/ui";

const UsageCharts = lazy(() => import("./UsageCharts"));

export function ProviderDashboard() {
  const { t } = useTranslation();
  const client = useQueryClient();
  const datasets = useQuery({ queryKey: ["datasets", "mine"], queryFn: () => narrowed<Page<Dataset>>(unwrap(apiClient.GET("/api/datasets/", { params: { query: { mine: true, limit: 200 } } }))) });
  const ingests = useQuery({ queryKey: ["ingests"], queryFn: () => unwrap(apiClient.GET("/api/ingests/", { params: { query: { limit: 20 } } })), refetchInterval: 3000 });
  const offers = useQuery({ queryKey: ["offers"], queryFn: () => unwrap(apiClient.GET("/api/offers/", { params: { query: { limit: 200 } } })) as Promise<Page<Offer>> });
  const agreements = useQuery({ queryKey: ["agreements"], queryFn: () => unwrap(apiClient.GET("/api/agreements/", { params: { query: { limit: 200 } } })) });
  const jobs = useQuery({ queryKey: ["audit-jobs"], queryFn: () => unwrap(apiClient.GET("/api/audit/jobs/", { params: { query: { limit: 500 } } })) as Promise<Page<AuditJob>>, refetchInterval: 5000 });
  const withdraw = useMutation({
    mutationFn: () => unwrap(apiClient.POST("/api/earnings/")),
    onSuccess: () => client.invalidateQueries({ queryKey: ["earnings"] }),
  });
  // While a withdrawal is on its way, the balance is read again until the chain shows it paid.
  const earnings = useQuery({
    queryKey: ["earnings"],
    queryFn: () => unwrap(apiClient.GET("/api/earnings/")),
    refetchInterval: (q) => (withdraw.data && q.state.data?.withdrawable !== "0" ? 1500 : false),
  });
  const algorithms = useQuery({ ...algorithmsQuery(), refetchInterval: 10_000 });
  const mine = new Set((datasets.data?.results ?? []).map((d) => d.id));
  const myOffers = (offers.data?.results ?? []).filter((o) => mine.has(o.dataset));
  const titles = Object.fromEntries((datasets.data?.results ?? []).map((d) => [d.id, d.title]));
  const failedIngests = (ingests.data?.results ?? []).filter((i) => i.status === "failed");
  const failedOffers = myOffers.filter((o) => o.status === "failed");
  const waitingAlgorithms = (algorithms.data?.results ?? []).filter((a) => a.status === "pending");

  return (
    <>
      <h1>{t("Provider dashboard")}</h1>
      <p>
        <a className="button" href={href("provider", "upload")}>
          {t("Upload a dataset")}
        </a>{" "}
        <a className="button" href={href("provider", "offer")}>
          {t("Publish an offer")}
        </a>
      </p>
      {(failedIngests.length > 0 || failedOffers.length > 0 || waitingAlgorithms.length > 0) && (
        <Section title={t("Alerts")} id="alerts">
          <ul>
            {waitingAlgorithms.length > 0 && (
              <li data-testid="algorithm-alert">
                <a href={href("provider", "algorithms")}>{t("{{count}} algorithm(s) await your approval", { count: waitingAlgorithms.length })}</a>
              </li>
            )}
            {failedIngests.map((i) => (
              <li key={i.id} className="error">
                {t("Ingest of {{file}} failed", { file: i.file_name })}: <code>{i.error?.code}</code>
              </li>
            ))}
            {failedOffers.map((o) => (
              <li key={o.id} className="error">
                {t("Offer on {{title}} failed", { title: titles[o.dataset] ?? o.dataset })}: {o.failure}
              </li>
            ))}
          </ul>
        </Section>
      )}
      <Section title={t("Earnings")} id="earnings">
        {earnings.isPending ? (
          <Loading />
        ) : earnings.error ? (
          <ErrorBox error={earnings.error} />
        ) : (
          <p>
            {t("Withdrawable")}: <strong data-testid="withdrawable">{tokens(earnings.data.withdrawable)}</strong>{" "}
            <button type="button" disabled={withdraw.isPending || BigInt(earnings.data.withdrawable) === 0n} onClick={() => withdraw.mutate()}>
              {t("Withdraw")}
            </button>
            {withdraw.data && (
              <span role="status">
                {" "}
                {t("Withdrawal")}: <Status value={withdraw.data.withdraw_tx.status} /> <TxLink hash={withdraw.data.withdraw_tx.tx_hash} />
              </span>
            )}
            <ErrorBox error={withdraw.error} />
          </p>
        )}
      </Section>
      <Section title={t("Uploads")} id="ingests">
        {ingests.isPending ? <Loading /> : ingests.error ? <ErrorBox error={ingests.error} /> : ingests.data.results.length === 0 ? <Empty>{t("Nothing uploaded yet.")}</Empty> : (
          <table>
            <thead>
              <tr><th>{t("File")}</th><th>{t("Status")}</th><th>{t("Progress")}</th><th>{t("Dataset")}</th></tr>
            </thead>
            <tbody>
              {ingests.data.results.map((i) => (
                <tr key={i.id}>
                  <td>{i.file_name}</td>
                  <td><Status value={i.status} /></td>
                  <td><progress max={100} value={i.progress} aria-label={t("Progress")} /> {i.progress}%</td>
                  <td>{i.dataset ? <a href={href("datasets", i.dataset)}>{titles[i.dataset] ?? i.dataset}</a> : "—"}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Section>
      <Section title={t("Datasets")} id="datasets">
        {datasets.isPending ? <Loading /> : datasets.error ? <ErrorBox error={datasets.error} /> : datasets.data.results.length === 0 ? <Empty>{t("No datasets yet.")}</Empty> : (
          <table>
            <thead>
              <tr><th>{t("Title")}</th><th>{t("Rows")}</th><th>{t("Privacy")}</th><th>{t("On chain")}</th></tr>
            </thead>
            <tbody>
              {datasets.data.results.map((d) => (
                <tr key={d.id}>
                  <td><a href={href("datasets", d.id)}>{d.title}</a></td>
                  <td>{d.profile.rows_approx}</td>
                  <td>{d.non_personal ? t("non-personal") : `ε ${d.privacy_epsilon}`}</td>
                  <td>{d.chain ? <><Status value={d.chain.status} /> <TxLink hash={d.chain.tx_hash} /></> : "—"}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Section>
      <Section title={t("Offers")} id="offers">
        {offers.isPending ? <Loading /> : myOffers.length === 0 ? <Empty>{t("No offers yet.")}</Empty> : (
          <table>
            <thead>
              <tr><th>{t("Dataset")}</th><th>{t("Operations")}</th><th>{t("Price per call")}</th><th>{t("Status")}</th><th>{t("Transaction")}</th></tr>
            </thead>
            <tbody>
              {myOffers.map((o) => (
                <tr key={o.id}>
                  <td>{titles[o.dataset]}</td>
                  <td>{o.operations.join(", ")}</td>
                  <td>{tokens(o.price_per_call)}</td>
                  <td><Status value={o.status} /></td>
                  <td><TxLink hash={o.publish_tx?.tx_hash} /></td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Section>
      <Section title={t("Agreements")} id="agreements">
        {agreements.isPending ? <Loading /> : (agreements.data?.results ?? []).length === 0 ? <Empty>{t("No agreements yet.")}</Empty> : (
          <table>
            <thead>
              <tr><th>{t("Consumer")}</th><th>{t("Calls")}</th><th>{t("Escrow")}</th><th>{t("Status")}</th><th>{t("Timeline")}</th></tr>
            </thead>
            <tbody>
              {agreements.data!.results.map((a) => (
                <tr key={a.id}>
                  <td>{a.consumer}</td>
                  <td>{a.calls}</td>
                  <td>{tokens(a.amount)}</td>
                  <td><Status value={a.status} /></td>
                  <td>{a.chain_agreement_id ? <a href={href("explorer", "agreement", a.chain_agreement_id)}>#{a.chain_agreement_id}</a> : "—"}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Section>
      <Section title={t("Jobs on your data")} id="jobs">
        {jobs.isPending ? <Loading /> : jobs.error ? <ErrorBox error={jobs.error} /> : jobs.data.results.length === 0 ? <Empty>{t("No jobs yet.")}</Empty> : (
          <>
            <Suspense fallback={<Loading />}>
              <UsageCharts jobs={jobs.data.results} />
            </Suspense>
            <table>
              <thead>
                <tr><th>{t("Dataset")}</th><th>{t("Operation")}</th><th>{t("Status")}</th><th>ε</th><th>{t("Requested")}</th></tr>
              </thead>
              <tbody>
                {jobs.data.results.slice(0, 50).map((j) => (
                  <tr key={j.id}>
                    <td>{j.dataset_title}</td>
                    <td>{j.operation}</td>
                    <td><Status value={j.status} /></td>
                    <td>{j.epsilon}</td>
                    <td>{new Date(j.timestamps.requested ?? "").toLocaleString()}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </>
        )}
      </Section>
    </>
  );
}
