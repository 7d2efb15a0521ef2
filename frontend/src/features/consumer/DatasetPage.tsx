import { useState } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { apiClient, unwrap, type Dataset, type Me, type Offer, type Page } from "../../api";
import { href } from "../../router";
import { Empty, ErrorBox, Loading, Section, Status, TxLink, tokens } from "../common/ui";

function AcceptOffer({ offer }: { offer: Offer }) {
  const { t } = useTranslation();
  const [calls, setCalls] = useState("5");
  const [agreementId, setAgreementId] = useState<string | null>(null);
  const accept = useMutation({
    mutationFn: () => unwrap(apiClient.POST("/api/agreements/", { body: { offer: offer.id, calls: Number(calls) } })),
    onSuccess: (a) => setAgreementId(a.id),
  });
  const agreement = useQuery({
    queryKey: ["agreement", agreementId],
    queryFn: () => unwrap(apiClient.GET("/api/agreements/{agreement_id}/", { params: { path: { agreement_id: agreementId! } } })),
    enabled: !!agreementId,
    refetchInterval: (q) => (q.state.data && q.state.data.status !== "pending" ? false : 1000),
  });
  return (
    <form
      className="inline"
      onSubmit={(e) => {
        e.preventDefault();
        accept.mutate();
      }}
    >
      <label>
        {t("Calls")} <input type="number" min="1" max={offer.max_calls} value={calls} onChange={(e) => setCalls(e.target.value)} size={4} />
      </label>{" "}
      <span className="muted">
        = {tokens(BigInt(offer.price_per_call) * BigInt(Number(calls) || 0))} {t("in escrow")}
      </span>{" "}
      <button type="submit" disabled={accept.isPending || !!agreementId}>
        {t("Accept offer")}
      </button>
      <ErrorBox error={accept.error} />
      {agreement.data && (
        <span role="status" data-testid="agreement-status" data-status={agreement.data.status}>
          {" "}
          <Status value={agreement.data.status} /> <TxLink hash={agreement.data.accept_tx?.tx_hash} />
          {agreement.data.status === "active" && (
            <>
              {" "}
              <a href={href("consumer", "run", agreement.data.id)}>{t("Run a computation")}</a>
            </>
          )}
          {agreement.data.failure && <span className="error"> {agreement.data.failure}</span>}
        </span>
      )}
    </form>
  );
}

/** The provider's own dataset: which categorical columns show their values publicly. */
function PublicColumns({ dataset }: { dataset: Dataset }) {
  const { t } = useTranslation();
  const client = useQueryClient();
  const [chosen, setChosen] = useState<string[]>(dataset.public_value_columns ?? []);
  const save = useMutation({
    mutationFn: () => unwrap(apiClient.PATCH("/api/datasets/{dataset_id}/", { params: { path: { dataset_id: dataset.id } }, body: { public_value_columns: chosen } })) as Promise<Dataset>,
    onSuccess: (updated) => client.setQueryData(["dataset", dataset.id], updated),
  });
  const categorical = dataset.profile.columns.filter((c) => c.type === "categorical");
  if (categorical.length === 0) return null;
  return (
    <form
      onSubmit={(e) => {
        e.preventDefault();
        save.mutate();
      }}
    >
      <fieldset>
        <legend>{t("Columns whose values are public")}</legend>
        {categorical.map((c) => (
          <label key={c.name} className="check">
            <input
              type="checkbox"
              checked={chosen.includes(c.name)}
              onChange={(e) => setChosen((x) => (e.target.checked ? [...x, c.name] : x.filter((n) => n !== c.name)))}
            />{" "}
            {c.name}
          </label>
        ))}
        <button type="submit" disabled={save.isPending}>
          {t("Save")}
        </button>{" "}
        {save.isSuccess && <span role="status">{t("Saved.")}</span>}
        <ErrorBox error={save.error} />
      </fieldset>
    </form>
  );
}

export function DatasetPage({ id, me }: { id: string; me: Me }) {
  const { t } = useTranslation();
  const dataset = useQuery({ queryKey: ["dataset", id], queryFn: () => unwrap(apiClient.GET("/api/datasets/{dataset_id}/", { params: { path: { dataset_id: id } } })) as Promise<Dataset> });
  const offers = useQuery({ queryKey: ["offers", id], queryFn: () => unwrap(apiClient.GET("/api/offers/", { params: { query: { dataset: id } } })) as Promise<Page<Offer>> });
  const isConsumer = me.roles.includes("consumer");
  if (dataset.isPending) return <Loading />;
  if (dataset.error) return <ErrorBox error={dataset.error} />;
  const d = dataset.data;
  return (
    <>
      <h1>{d.title}</h1>
      <p>{d.description}</p>
      <dl className="facts">
        <dt>{t("Provider")}</dt>
        <dd>{d.provider}</dd>
        <dt>{t("Rows")}</dt>
        <dd>≈{d.profile.rows_approx}</dd>
        <dt>{t("Privacy")}</dt>
        <dd>{d.non_personal ? t("non-personal") : `${t("personal")}, ε ${d.privacy_epsilon}`}</dd>
        <dt>{t("Content SHA-256")}</dt>
        <dd className="mono">{d.content_sha256}</dd>
        <dt>{t("On chain")}</dt>
        <dd>{d.chain ? <><Status value={d.chain.status} /> <TxLink hash={d.chain.tx_hash} /></> : "—"}</dd>
      </dl>
      <Section title={t("Schema and public profile")} id="schema">
        <table>
          <thead>
            <tr><th>{t("Column")}</th><th>{t("Type")}</th><th>{t("Empty")}</th><th>{t("Values")}</th></tr>
          </thead>
          <tbody>
            {d.profile.columns.map((c) => (
              <tr key={c.name}>
                <th scope="row">{c.name}</th>
                <td>{t(c.type)}</td>
                <td>{Math.round(c.null_fraction * 100)}%</td>
                <td>{c.values ? c.values.join(", ") : c.cardinality !== undefined ? t("{{n}} categories (not public)", { n: c.cardinality }) : "—"}</td>
              </tr>
            ))}
          </tbody>
        </table>
        {d.public_value_columns !== undefined && d.provider === me.username && <PublicColumns dataset={d} />}
      </Section>
      <Section title={t("Offers")} id="offers">
        {offers.isPending ? <Loading /> : offers.error ? <ErrorBox error={offers.error} /> : offers.data.results.length === 0 ? <Empty>{t("No offers yet.")}</Empty> : (
          <ul className="cards">
            {offers.data.results.map((o) => (
              <li key={o.id} data-offer={o.id}>
                <p>
                  <strong>{o.operations.join(", ")}</strong> — {t("for")} {o.purposes.join(", ")}
                </p>
                <p className="muted">
                  {tokens(o.price_per_call)} {t("per call")} · {t("up to {{n}} calls", { n: o.max_calls })} · {Math.round(o.duration_seconds / 86400)} {t("days")} · ε {o.privacy_budget} · k ≥ {o.min_cohort} · <Status value={o.status} />
                </p>
                {isConsumer && o.status === "published" && <AcceptOffer offer={o} />}
              </li>
            ))}
          </ul>
        )}
      </Section>
    </>
  );
}
