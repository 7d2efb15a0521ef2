import { useState } from "react";
import { useQuery } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { ApiError, apiClient, unwrap, uploadDataset, uploadForm } from "../../api";
import { href } from "../../router";
import { ErrorBox, Status } from "../common/ui";
import { COLUMN_TYPES, encryptionOptions, previewCsv, previewTypeOf, type ColumnSettings, type ColumnType, type PreviewColumn } from "./schemaPreview";

const SAMPLE_BYTES = 256 * 1024;

export function Upload() {
  const { t } = useTranslation();
  const [file, setFile] = useState<File | null>(null);
  const [title, setTitle] = useState("");
  const [keywords, setKeywords] = useState("");
  const [nonPersonal, setNonPersonal] = useState(false);
  const [epsilon, setEpsilon] = useState("1");
  const [columns, setColumns] = useState<PreviewColumn[]>([]);
  const [settings, setSettings] = useState<Record<string, ColumnSettings>>({});
  const [types, setTypes] = useState<Record<string, ColumnType>>({});
  const [sent, setSent] = useState<{ sent: number; total: number } | null>(null);
  const [ingestId, setIngestId] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);

  const ingest = useQuery({
    queryKey: ["ingest", ingestId],
    queryFn: () => unwrap(apiClient.GET("/api/ingests/{ingest_id}/", { params: { path: { ingest_id: ingestId! } } })),
    enabled: !!ingestId,
    refetchInterval: (query) => (["succeeded", "failed"].includes(query.state.data?.status ?? "") ? false : 500),
  });

  async function choose(chosen: File | null) {
    setFile(chosen);
    setColumns([]);
    setTypes({});
    if (!chosen) return;
    if (!title) setTitle(chosen.name.replace(/\.(csv|parquet)$/i, ""));
    if (!/\.csv$/i.test(chosen.name)) return;
    const preview = previewCsv(await chosen.slice(0, SAMPLE_BYTES).text());
    setColumns(preview);
    setSettings(
      Object.fromEntries(
        preview.map((c) => [
          c.name,
          { type: c.type, publicValues: false, lo: c.min === null ? "" : String(c.min), hi: c.max === null ? "" : String(c.max), buckets: "", sumsOnly: false, groupBy: [] },
        ]),
      ),
    );
  }

  function correct(column: PreviewColumn, type: ColumnType | "") {
    setTypes(({ [column.name]: _dropped, ...rest }) => (type ? { ...rest, [column.name]: type } : rest));
    set(column.name, { type: type ? previewTypeOf(type) : column.type });
  }

  function set(name: string, change: Partial<ColumnSettings>) {
    setSettings((s) => ({ ...s, [name]: { ...s[name], ...change } }));
  }

  const options = encryptionOptions(settings);

  async function submit(event: React.FormEvent) {
    event.preventDefault();
    if (!file) return;
    setError(null);
    setIngestId(null);
    const form = uploadForm(
      {
        title,
        keywords: keywords.split(",").map((k) => k.trim()).filter(Boolean),
        non_personal: nonPersonal,
        privacy_epsilon: nonPersonal ? undefined : Number(epsilon),
        public_value_columns: options.publicValueColumns,
        encryption: options.encryption,
        column_types: Object.keys(types).length ? types : undefined,
      },
      file,
      file.name,
    );
    try {
      const started = await uploadDataset(form, (s, total) => setSent({ sent: s, total }));
      setIngestId(started.id);
    } catch (e) {
      setError(e);
    }
  }

  const sentPercent = sent && sent.total ? Math.round((100 * sent.sent) / sent.total) : 0;
  return (
    <>
      <h1>{t("Upload a dataset")}</h1>
      <form onSubmit={submit} className="form">
        <label htmlFor="file">{t("File (CSV or Parquet)")}</label>
        <input id="file" type="file" accept=".csv,.parquet" onChange={(e) => choose(e.target.files?.[0] ?? null)} required />
        <label htmlFor="title">{t("Title")}</label>
        <input id="title" value={title} onChange={(e) => setTitle(e.target.value)} required maxLength={200} />
        <label htmlFor="keywords">{t("Keywords (comma separated)")}</label>
        <input id="keywords" value={keywords} onChange={(e) => setKeywords(e.target.value)} />
        <label htmlFor="non-personal">{t("No row describes a person (non-personal)")}</label>
        <input id="non-personal" type="checkbox" checked={nonPersonal} onChange={(e) => setNonPersonal(e.target.checked)} />
        {!nonPersonal && (
          <>
            <label htmlFor="epsilon">{t("Total privacy budget (ε)")}</label>
            <input id="epsilon" type="number" min="0.01" step="0.01" value={epsilon} onChange={(e) => setEpsilon(e.target.value)} />
          </>
        )}
        {columns.length > 0 && (
          <fieldset className="wide">
            <legend>{t("Inferred schema")}</legend>
            <p className="muted">{t("From the first rows; the server profiles the whole file. Bounds clamp every value; answers outside bounds are never released.")}</p>
            <p className="muted">{t("Group-by sums: for a categorical column, the numeric columns consumers will group by it. Their per-category sums are prepared at ingest, so those answers come at once; other pairs are computed row by row.")}</p>
            <table>
              <thead>
                <tr><th>{t("Column")}</th><th>{t("Type")}</th><th>{t("Values public")}</th><th>{t("Lower bound")}</th><th>{t("Upper bound")}</th><th>{t("Bucket edges")}</th><th>{t("Sums only")}</th><th>{t("Group-by sums of")}</th></tr>
              </thead>
              <tbody>
                {columns.map((c) => {
                  const s = settings[c.name];
                  const numericColumns = columns.filter((o) => settings[o.name]?.type === "numeric").map((o) => o.name);
                  const numeric = s?.type === "numeric";
                  return (
                    <tr key={c.name} data-column={c.name}>
                      <th scope="row">{c.name}</th>
                      <td>
                        <select aria-label={t("Type of {{column}}", { column: c.name })} value={types[c.name] ?? ""} onChange={(e) => correct(c, e.target.value as ColumnType | "")}>
                          <option value="">{t("as inferred ({{type}})", { type: t(c.type) })}</option>
                          {COLUMN_TYPES.map((type) => (
                            <option key={type} value={type}>
                              {t(type)}
                            </option>
                          ))}
                        </select>
                      </td>
                      <td>
                        <input type="checkbox" aria-label={t("Values of {{column}} public", { column: c.name })} disabled={s?.type !== "categorical"} checked={!!s?.publicValues} onChange={(e) => set(c.name, { publicValues: e.target.checked })} />
                      </td>
                      <td><input aria-label={t("Lower bound of {{column}}", { column: c.name })} disabled={!numeric} value={s?.lo ?? ""} onChange={(e) => set(c.name, { lo: e.target.value })} size={6} /></td>
                      <td><input aria-label={t("Upper bound of {{column}}", { column: c.name })} disabled={!numeric} value={s?.hi ?? ""} onChange={(e) => set(c.name, { hi: e.target.value })} size={6} /></td>
                      <td><input aria-label={t("Bucket edges of {{column}}", { column: c.name })} disabled={!numeric} value={s?.buckets ?? ""} placeholder="18, 30, 65" onChange={(e) => set(c.name, { buckets: e.target.value })} /></td>
                      <td><input type="checkbox" aria-label={t("Sums only for {{column}}", { column: c.name })} disabled={!numeric} checked={!!s?.sumsOnly} onChange={(e) => set(c.name, { sumsOnly: e.target.checked })} /></td>
                      <td>
                        {s?.type === "categorical" && numericColumns.length > 0 && (
                          <select
                            multiple
                            size={Math.min(numericColumns.length, 4)}
                            aria-label={t("Group-by sums of {{column}}", { column: c.name })}
                            value={s.groupBy ?? []}
                            onChange={(e) => set(c.name, { groupBy: Array.from(e.target.selectedOptions, (o) => o.value) })}
                          >
                            {numericColumns.map((name) => (
                              <option key={name} value={name}>
                                {name}
                              </option>
                            ))}
                          </select>
                        )}
                      </td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
            {options.problems.length > 0 && (
              <p role="alert" className="error">
                {t("Check the bounds or edges of: {{columns}}", { columns: options.problems.join(", ") })}
              </p>
            )}
          </fieldset>
        )}
        <button type="submit" className="wide" disabled={!file || options.problems.length > 0}>
          {t("Upload")}
        </button>
      </form>
      <ErrorBox error={error} />
      {sent && (
        <p>
          <label htmlFor="sent">{t("Sent")}</label> <progress id="sent" max={100} value={sentPercent} /> <span data-testid="sent-percent">{sentPercent}%</span>{" "}
          ({Math.round(sent.sent / 1024)} / {Math.round(sent.total / 1024)} KiB)
        </p>
      )}
      {ingest.data && (
        <p data-testid="ingest" data-status={ingest.data.status}>
          <label htmlFor="ingest-progress">{t("Ingest")}</label> <progress id="ingest-progress" max={100} value={ingest.data.progress} /> {ingest.data.progress}%{" "}
          <Status value={ingest.data.status} />
          {ingest.data.error && <ErrorBox error={new ApiError(0, ingest.data.error.code, ingest.data.error.message)} />}
          {ingest.data.dataset && (
            <>
              {" "}
              <a href={href("datasets", ingest.data.dataset)}>{t("Open the dataset")}</a> ·{" "}
              <a href={href("provider", "offer", ingest.data.dataset)}>{t("Publish an offer")}</a>
            </>
          )}
        </p>
      )}
    </>
  );
}
