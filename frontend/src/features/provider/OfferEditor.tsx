import { useState } from "react";
import { useMutation, useQuery } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { apiClient, narrowed, unwrap, type Schemas, type Dataset, type Offer, type Operation, type Page } from "../../api";
import { ErrorBox, Loading, Status, TxLink } from "../common/ui";
import { odrlDraft, TEE_OPERATION, toBaseUnits, type TeeTerms } from "./odrlDraft";

export function OfferEditor({ datasetId }: { datasetId?: string }) {
  const { t } = useTranslation();
  const datasets = useQuery({ queryKey: ["datasets", "mine"], queryFn: () => narrowed<Page<Dataset>>(unwrap(apiClient.GET("/api/datasets/", { params: { query: { mine: true, limit: 200 } } }))) });
  const operations = useQuery({ queryKey: ["operations"], queryFn: () => unwrap(apiClient.GET("/api/operations/")) as Promise<Operation[]> });
  const [dataset, setDataset] = useState(datasetId ?? "");
  const [purposes, setPurposes] = useState("research");
  const [chosen, setChosen] = useState<string[]>(["count", "mean"]);
  const [maxCalls, setMaxCalls] = useState("100");
  const [price, setPrice] = useState("1");
  const [days, setDays] = useState("30");
  const [budget, setBudget] = useState("0.5");
  const [minCohort, setMinCohort] = useState("10");
  // Algorithms consumers submit (the operation "algorithm", run in a TEE): off unless chosen.
  const [allowAlgorithms, setAllowAlgorithms] = useState(false);
  const [allowSandbox, setAllowSandbox] = useState(false);
  const [computeRate, setComputeRate] = useState("0");
  const [maxCpuMillis, setMaxCpuMillis] = useState("0");
  const [memoryMiB, setMemoryMiB] = useState("512");
  const [wallSeconds, setWallSeconds] = useState("60");
  const [offerId, setOfferId] = useState<string | null>(null);

  const selected = datasets.data?.results.find((d) => d.id === dataset) ?? datasets.data?.results[0];
  const purposeList = purposes.split(",").map((p) => p.trim()).filter(Boolean);
  const allOperations = allowAlgorithms ? [...chosen, TEE_OPERATION] : chosen;
  let priceUnits = 0n;
  let priceError = false;
  try {
    priceUnits = toBaseUnits(price);
  } catch {
    priceError = true;
  }
  let rateUnits = 0n;
  let rateError = false;
  try {
    rateUnits = toBaseUnits(computeRate);
  } catch {
    rateError = allowAlgorithms;
  }
  const tee: TeeTerms | undefined = allowAlgorithms
    ? {
        allowSandbox,
        computeRate: rateUnits,
        maxCpuMillis: Number(maxCpuMillis),
        memoryLimitBytes: Math.round(Number(memoryMiB) * 1024 * 1024),
        wallSeconds: Number(wallSeconds),
      }
    : undefined;
  const publish = useMutation({
    mutationFn: () =>
      unwrap(
        apiClient.POST("/api/offers/", {
          body: {
            dataset: selected?.id ?? "",
          purposes: purposeList,
          operations: allOperations,
          max_calls: Number(maxCalls),
          // The schema says integer (DRF's IntegerField up to 2^96), which also parses a decimal
          // string; base units of an 18-decimal token pass 2^53, so they go as text, exact.
          price_per_call: priceUnits.toString() as unknown as number,
          duration_days: Number(days),
          privacy_budget: selected?.non_personal ? 0 : Number(budget),
          min_cohort: Number(minCohort),
          // The server refuses TEE terms on an offer without the operation "algorithm", so they
          // go only with it; openapi-typescript marks fields with a server default as required.
          ...(tee && {
            allow_sandbox: tee.allowSandbox,
            compute_rate: tee.computeRate.toString() as unknown as number,
            max_cpu_millis: tee.maxCpuMillis,
            memory_limit_bytes: tee.memoryLimitBytes,
            wall_seconds: tee.wallSeconds,
          }),
          } as Schemas["OfferCreateRequest"],
        }),
      ) as Promise<Offer>,
    onSuccess: (offer) => setOfferId(offer.id),
  });
  const offer = useQuery({
    queryKey: ["offer", offerId],
    queryFn: () => unwrap(apiClient.GET("/api/offers/{offer_id}/", { params: { path: { offer_id: offerId! } } })) as Promise<Offer>,
    enabled: !!offerId,
    refetchInterval: (q) => (q.state.data && q.state.data.status !== "pending" ? false : 1000),
  });

  if (datasets.isPending || operations.isPending) return <Loading />;
  if (datasets.error || operations.error) return <ErrorBox error={datasets.error ?? operations.error} />;
  const draft = selected
    ? odrlDraft({
        datasetId: selected.id,
        provider: "(your wallet)",
        purposes: purposeList,
        operations: allOperations,
        maxCalls: Number(maxCalls),
        pricePerCall: priceUnits,
        durationSeconds: Math.round(Number(days) * 86400),
        privacyBudget: selected.non_personal ? 0 : Number(budget),
        minCohort: Number(minCohort),
        nonPersonal: !!selected.non_personal,
        tee,
      })
    : null;

  return (
    <>
      <h1>{t("Publish an offer")}</h1>
      <div className="split">
        <form
          className="form"
          onSubmit={(e) => {
            e.preventDefault();
            publish.mutate();
          }}
        >
          <label htmlFor="offer-dataset">{t("Dataset")}</label>
          <select id="offer-dataset" value={selected?.id ?? ""} onChange={(e) => setDataset(e.target.value)}>
            {datasets.data.results.map((d) => (
              <option key={d.id} value={d.id}>
                {d.title}
              </option>
            ))}
          </select>
          <label htmlFor="purposes">{t("Purposes (comma separated)")}</label>
          <input id="purposes" value={purposes} onChange={(e) => setPurposes(e.target.value)} />
          <fieldset className="wide">
            <legend>{t("Operations")}</legend>
            {operations.data.map((op) => (
              <label key={op.name} className="check" title={op.description}>
                <input
                  type="checkbox"
                  name="operation"
                  value={op.name}
                  checked={chosen.includes(op.name)}
                  onChange={(e) => setChosen((c) => (e.target.checked ? [...c, op.name] : c.filter((x) => x !== op.name)))}
                />{" "}
                {op.name}
              </label>
            ))}
          </fieldset>
          <fieldset className="wide" data-testid="algorithm-terms">
            <legend>{t("Algorithms (TEE execution)")}</legend>
            <label className="check">
              <input id="allow-algorithms" type="checkbox" checked={allowAlgorithms} onChange={(e) => setAllowAlgorithms(e.target.checked)} />{" "}
              {t("Consumers may submit algorithms for my approval")}
            </label>
            {allowAlgorithms && (
              <>
                <label className="check">
                  <input id="allow-sandbox" type="checkbox" checked={allowSandbox} onChange={(e) => setAllowSandbox(e.target.checked)} />{" "}
                  {t("Accept sandbox execution (SIMULATED: no hardware TEE)")}
                </label>
                <label htmlFor="compute-rate">{t("Compute price per CPU-second (tokens; 0: not metered)")}</label>
                <input id="compute-rate" value={computeRate} onChange={(e) => setComputeRate(e.target.value)} aria-invalid={rateError} />
                <label htmlFor="max-cpu">{t("Most CPU-milliseconds charged per call")}</label>
                <input id="max-cpu" type="number" min="0" value={maxCpuMillis} onChange={(e) => setMaxCpuMillis(e.target.value)} />
                <label htmlFor="memory">{t("Memory limit (MiB)")}</label>
                <input id="memory" type="number" min="16" value={memoryMiB} onChange={(e) => setMemoryMiB(e.target.value)} />
                <label htmlFor="wall">{t("Wall-clock limit (seconds)")}</label>
                <input id="wall" type="number" min="1" max="86400" value={wallSeconds} onChange={(e) => setWallSeconds(e.target.value)} />
              </>
            )}
          </fieldset>
          <label htmlFor="max-calls">{t("Calls")}</label>
          <input id="max-calls" type="number" min="1" value={maxCalls} onChange={(e) => setMaxCalls(e.target.value)} />
          <label htmlFor="price">{t("Price per call (tokens)")}</label>
          <input id="price" value={price} onChange={(e) => setPrice(e.target.value)} aria-invalid={priceError} />
          <label htmlFor="days">{t("Validity (days)")}</label>
          <input id="days" type="number" min="0.05" step="any" value={days} onChange={(e) => setDays(e.target.value)} />
          {!selected?.non_personal && (
            <>
              <label htmlFor="budget">{t("Privacy budget per consumer (ε)")}</label>
              <input id="budget" type="number" min="0" step="any" value={budget} onChange={(e) => setBudget(e.target.value)} />
            </>
          )}
          <label htmlFor="k">{t("Minimum cohort (k)")}</label>
          <input id="k" type="number" min="1" value={minCohort} onChange={(e) => setMinCohort(e.target.value)} />
          <button type="submit" className="wide" disabled={publish.isPending || priceError || rateError || !selected || allOperations.length === 0}>
            {t("Publish on chain")}
          </button>
          <ErrorBox error={publish.error} />
        </form>
        <aside aria-label={t("ODRL policy")}>
          <h2>{offer.data ? t("ODRL policy (as published)") : t("ODRL policy (draft)")}</h2>
          <pre className="json" data-testid="odrl">{JSON.stringify(offer.data?.policy ?? draft, null, 2)}</pre>
          {offer.data && (
            <dl data-testid="offer-status" data-status={offer.data.status}>
              <dt>{t("Status")}</dt>
              <dd><Status value={offer.data.status} /></dd>
              <dt>{t("Policy hash")}</dt>
              <dd className="mono">{offer.data.policy_hash}</dd>
              <dt>{t("Transaction")}</dt>
              <dd>
                {offer.data.publish_tx ? <><Status value={offer.data.publish_tx.status} /> <TxLink hash={offer.data.publish_tx.tx_hash} /></> : "—"}
                {offer.data.publish_tx?.revert_reason && <span className="error"> {offer.data.publish_tx.revert_reason}</span>}
              </dd>
              {offer.data.chain_offer_id !== null && (
                <>
                  <dt>{t("Offer on chain")}</dt>
                  <dd>#{offer.data.chain_offer_id}</dd>
                </>
              )}
              {offer.data.failure && <dd className="error">{offer.data.failure}</dd>}
            </dl>
          )}
        </aside>
      </div>
    </>
  );
}
