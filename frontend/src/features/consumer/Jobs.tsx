import { useState } from "react";
import { useMutation, useQuery } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { ApiError, apiClient, jobText, unwrap, type Schemas, type Dataset, type Job, type Offer, type Operation, type Page } from "../../api";
import { href, navigate } from "../../router";
import { Empty, ErrorBox, Loading, Section, Status, TxLink } from "../common/ui";
import { fieldsOf, paramsOf, type FormValues } from "./operationForm";

const FINAL = new Set(["settled", "withheld", "rejected", "refunded"]);
const FLOW = ["requested", "authorised", "computed", "released", "settled"];

export function RunJob({ agreementId }: { agreementId: string }) {
  const { t } = useTranslation();
  const agreement = useQuery({ queryKey: ["agreement", agreementId], queryFn: () => unwrap(apiClient.GET("/api/agreements/{agreement_id}/", { params: { path: { agreement_id: agreementId } } })) });
  const offer = useQuery({ queryKey: ["offer", agreement.data?.offer], queryFn: () => unwrap(apiClient.GET("/api/offers/{offer_id}/", { params: { path: { offer_id: agreement.data!.offer } } })) as Promise<Offer>, enabled: !!agreement.data });
  const dataset = useQuery({ queryKey: ["dataset", offer.data?.dataset], queryFn: () => unwrap(apiClient.GET("/api/datasets/{dataset_id}/", { params: { path: { dataset_id: offer.data!.dataset } } })) as Promise<Dataset>, enabled: !!offer.data });
  const operations = useQuery({ queryKey: ["operations"], queryFn: () => unwrap(apiClient.GET("/api/operations/")) as Promise<Operation[]> });
  const [operation, setOperation] = useState("");
  const [purpose, setPurpose] = useState("");
  const [epsilon, setEpsilon] = useState("0.1");
  const [values, setValues] = useState<FormValues>({});
  const run = useMutation({
    mutationFn: (body: Schemas["JobCreateRequest"]) =>
      unwrap(apiClient.POST("/api/jobs/", { body, params: { header: { "Idempotency-Key": crypto.randomUUID() } } })) as Promise<Job>,
    onSuccess: (job) => navigate("consumer", "jobs", job.id),
  });
  if (agreement.isPending || offer.isPending || dataset.isPending || operations.isPending) return <Loading />;
  const error = agreement.error ?? offer.error ?? dataset.error ?? operations.error;
  if (error) return <ErrorBox error={error} />;
  const allowed = operations.data!.filter((op) => offer.data!.operations.includes(op.name));
  const op = allowed.find((o) => o.name === operation) ?? allowed[0];
  const fields = op ? fieldsOf(op, dataset.data!.profile.columns) : [];
  const { params, problems } = paramsOf(fields, values);
  const chosenPurpose = purpose || offer.data!.purposes[0];
  return (
    <>
      <h1>{t("Run a computation on {{title}}", { title: dataset.data!.title })}</h1>
      <form
        className="form"
        onSubmit={(e) => {
          e.preventDefault();
          run.mutate({ agreement: agreementId, operation: op.name, purpose: chosenPurpose, epsilon: dataset.data!.non_personal ? 0 : Number(epsilon), params });
        }}
      >
        <label htmlFor="operation">{t("Operation")}</label>
        <select id="operation" value={op?.name} onChange={(e) => (setOperation(e.target.value), setValues({}))}>
          {allowed.map((o) => (
            <option key={o.name} value={o.name}>
              {o.name}
            </option>
          ))}
        </select>
        {op && <p className="wide muted">{op.description}</p>}
        {fields.map((f) => (
          <FieldInput key={`${op.name}.${f.name}`} field={f} value={values[f.name]} onChange={(v) => setValues((s) => ({ ...s, [f.name]: v }))} />
        ))}
        <label htmlFor="purpose">{t("Purpose")}</label>
        <select id="purpose" value={chosenPurpose} onChange={(e) => setPurpose(e.target.value)}>
          {offer.data!.purposes.map((p) => (
            <option key={p}>{p}</option>
          ))}
        </select>
        {!dataset.data!.non_personal && (
          <>
            <label htmlFor="job-epsilon">{t("Privacy loss of this answer (ε)")}</label>
            <input id="job-epsilon" type="number" min="0.001" step="any" value={epsilon} onChange={(e) => setEpsilon(e.target.value)} />
          </>
        )}
        {problems.length > 0 && <p className="wide muted">{t("To fill in: {{fields}}", { fields: problems.join(", ") })}</p>}
        <button type="submit" className="wide" disabled={run.isPending || problems.length > 0}>
          {t("Run")}
        </button>
        <ErrorBox error={run.error} />
      </form>
    </>
  );
}

function FieldInput({ field, value, onChange }: { field: ReturnType<typeof fieldsOf>[number]; value: string | string[] | undefined; onChange: (v: string | string[]) => void }) {
  const { t } = useTranslation();
  const id = `param-${field.name}`;
  const label = (
    <label htmlFor={id} title={field.description}>
      {field.name}
      {field.required ? " *" : ""}
    </label>
  );
  if (field.kind === "column" || field.kind === "choice")
    return (
      <>
        {label}
        <select id={id} value={(value as string) ?? ""} onChange={(e) => onChange(e.target.value)}>
          <option value="">{field.required ? t("choose…") : t("(none)")}</option>
          {field.options.map((o) => (
            <option key={o}>{o}</option>
          ))}
        </select>
      </>
    );
  if (field.kind === "columns")
    return (
      <>
        {label}
        <select id={id} multiple value={(value as string[]) ?? []} onChange={(e) => onChange(Array.from(e.target.selectedOptions, (o) => o.value))}>
          {field.options.map((o) => (
            <option key={o}>{o}</option>
          ))}
        </select>
      </>
    );
  return (
    <>
      {label}
      <textarea id={id} rows={field.kind === "json" ? 2 : 1} placeholder={field.kind === "json" ? '{"column": "region", "equals": "north"}' : ""} value={(value as string) ?? ""} onChange={(e) => onChange(e.target.value)} />
    </>
  );
}

export function JobList() {
  const { t } = useTranslation();
  const jobs = useQuery({ queryKey: ["jobs"], queryFn: () => unwrap(apiClient.GET("/api/jobs/", { params: { query: { limit: 100 } } })) as Promise<Page<Job>>, refetchInterval: 3000 });
  const agreements = useQuery({ queryKey: ["agreements"], queryFn: () => unwrap(apiClient.GET("/api/agreements/", { params: { query: { limit: 200 } } })) });
  return (
    <>
      <h1>{t("Your jobs")}</h1>
      <Section title={t("Agreements")} id="my-agreements">
        {(agreements.data?.results ?? []).length === 0 ? <Empty>{t("No agreements yet: accept an offer in the catalogue.")}</Empty> : (
          <ul>
            {agreements.data!.results.map((a) => (
              <li key={a.id}>
                <Status value={a.status} /> {a.calls} {t("calls")} · {a.status === "active" && <a href={href("consumer", "run", a.id)}>{t("Run a computation")}</a>}
              </li>
            ))}
          </ul>
        )}
      </Section>
      {jobs.isPending ? <Loading /> : jobs.error ? <ErrorBox error={jobs.error} /> : jobs.data.results.length === 0 ? <Empty>{t("No jobs yet.")}</Empty> : (
        <table>
          <thead>
            <tr><th>{t("Operation")}</th><th>{t("Status")}</th><th>ε</th><th>{t("Requested")}</th></tr>
          </thead>
          <tbody>
            {jobs.data.results.map((j) => (
              <tr key={j.id}>
                <td><a href={href("consumer", "jobs", j.id)}>{j.operation}</a></td>
                <td><Status value={j.status} /></td>
                <td>{j.epsilon}</td>
                <td>{new Date(j.timestamps.requested ?? "").toLocaleString()}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  );
}

/** Each released number with its 95% noise interval: `value ± bound`, nested as the result is. */
function WithBounds({ value, bounds }: { value: unknown; bounds: unknown }) {
  if (typeof value === "number") {
    return (
      <span className="number">
        {value}
        {typeof bounds === "number" && <span className="bound"> ± {bounds}</span>}
      </span>
    );
  }
  if (Array.isArray(value)) {
    return (
      <ol>
        {value.map((v, k) => (
          <li key={k}>
            <WithBounds value={v} bounds={Array.isArray(bounds) ? bounds[k] : null} />
          </li>
        ))}
      </ol>
    );
  }
  if (value && typeof value === "object") {
    return (
      <dl className="result">
        {Object.entries(value).map(([k, v]) => (
          <div key={k}>
            <dt>{k}</dt>
            <dd>
              <WithBounds value={v} bounds={bounds && typeof bounds === "object" ? (bounds as Record<string, unknown>)[k] : null} />
            </dd>
          </div>
        ))}
      </dl>
    );
  }
  return <span>{String(value)}</span>;
}

export function JobPage({ id }: { id: string }) {
  const { t } = useTranslation();
  const job = useQuery({
    queryKey: ["job", id],
    queryFn: () => unwrap(apiClient.GET("/api/jobs/{job_id}/", { params: { path: { job_id: id } } })) as Promise<Job>,
    refetchInterval: (q) => (q.state.data && FINAL.has(q.state.data.status ?? "") ? false : 700),
  });
  const done = !!job.data?.receipt;
  const raw = useQuery({ queryKey: ["job-raw", id, done], queryFn: () => jobText(id), enabled: done });
  if (job.isPending) return <Loading />;
  if (job.error) return <ErrorBox error={job.error} />;
  const j = job.data;
  const shared = raw.data ?? "";
  return (
    <>
      <h1>
        {j.operation} <Status value={j.status} />
      </h1>
      <ol className="steps" aria-label={t("Progress")}>
        {FLOW.map((s) => (
          <li key={s} className={j.timestamps[s] ? "done" : ""}>
            {t(s)} {j.timestamps[s] && <time className="muted">{new Date(j.timestamps[s]!).toLocaleTimeString()}</time>}
          </li>
        ))}
      </ol>
      {j.failure && <ErrorBox error={new ApiError(0, j.failure.code, j.failure.message)} />}
      <dl className="facts">
        <dt>{t("Parameters")}</dt>
        <dd className="mono">{JSON.stringify(j.params)}</dd>
        <dt>{t("Chain job id")}</dt>
        <dd className="mono">{j.chain_job_id}</dd>
        <dt>{t("Usage recorded")}</dt>
        <dd><TxLink hash={j.transactions.record_usage?.tx_hash} /></dd>
        <dt>{t("Settlement")}</dt>
        <dd><TxLink hash={j.transactions.settle?.tx_hash} /></dd>
        {j.transactions.refund && (
          <>
            <dt>{t("Refund")}</dt>
            <dd><TxLink hash={j.transactions.refund.tx_hash} /></dd>
          </>
        )}
        {j.tee && (
          // An algorithm job: where it ran, and whether that evidence is only simulated.
          <>
            <dt>{t("Executed in")}</dt>
            <dd data-testid="tee" data-label={String(j.tee.label)}>
              {String(j.tee.tee_type)} · <strong>{String(j.tee.label)}</strong>
              {j.tee.label === "SIMULATED" && <span className="muted"> ({t("the local sandbox: no hardware attestation")})</span>}
            </dd>
            <dt>{t("Measurement")}</dt>
            <dd className="mono">{String(j.tee.measurement)}</dd>
          </>
        )}
      </dl>
      {j.status === "settled" && (
        <Section title={t("Result")} id="result">
          <div data-testid="result">
            <WithBounds value={j.result} bounds={j.error_bounds} />
          </div>
          <p className="muted">{t("± is the half-width of a 95% interval of the privacy noise.")}</p>
        </Section>
      )}
      {j.receipt && (
        <Section title={t("Receipt")} id="receipt">
          <p>{t("Share this with an auditor to let them check your result against the chain.")}</p>
          <textarea readOnly rows={10} className="json wide" aria-label={t("Receipt")} data-testid="shared-receipt" value={shared} />
          <p>
            <a href={href("explorer", "job", j.chain_job_id)}>{t("Open in the explorer")}</a>
          </p>
        </Section>
      )}
    </>
  );
}
