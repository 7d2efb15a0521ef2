import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { apiClient, unwrap } from "../../api";
import { ErrorBox, Loading } from "../common/ui";

interface Report {
  id: number;
  ok: boolean;
  checked: Record<string, number>;
  mismatches: string[];
  started_at: string;
  finished_at: string | null;
}

function download(name: string, type: string, text: string) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = Object.assign(document.createElement("a"), { href: url, download: name });
  a.click();
  URL.revokeObjectURL(url);
}

export function reportCsv(report: Report): string {
  const quote = (s: string) => `"${s.replace(/"/g, '""')}"`;
  return ["kind,detail", ...Object.entries(report.checked).map(([k, v]) => `checked,${quote(`${k}=${v}`)}`), ...report.mismatches.map((m) => `divergence,${quote(m)}`)].join("\n") + "\n";
}

export function Reconcile() {
  const { t } = useTranslation();
  const client = useQueryClient();
  const report = useQuery({ queryKey: ["reconcile"], queryFn: () => unwrap(apiClient.GET("/api/audit/reconcile/")) as Promise<Report>, retry: false, refetchInterval: 5000 });
  const run = useMutation({
    mutationFn: () => unwrap(apiClient.POST("/api/audit/reconcile/")),
    onSuccess: () => setTimeout(() => client.invalidateQueries({ queryKey: ["reconcile"] }), 1500),
  });
  return (
    <>
      <h1>{t("Reconciliation report")}</h1>
      <p className="muted">{t("Chain events and contract state against the platform's records, both ways (computed off-chain by the platform).")}</p>
      <p>
        <button type="button" onClick={() => run.mutate()} disabled={run.isPending}>
          {t("Run again")}
        </button>
      </p>
      <ErrorBox error={run.error} />
      {report.isPending ? <Loading /> : report.error ? <ErrorBox error={report.error} /> : (
        <div data-testid="reconcile" data-ok={String(report.data.ok)}>
          <p className={report.data.ok ? "ok" : "error"}>{report.data.ok ? t("Chain and platform agree.") : t("{{n}} divergences", { n: report.data.mismatches.length })}</p>
          <p className="muted">{new Date(report.data.finished_at ?? report.data.started_at).toLocaleString()}</p>
          <ul>
            {Object.entries(report.data.checked).map(([k, v]) => (
              <li key={k}>{k}: {v}</li>
            ))}
          </ul>
          {report.data.mismatches.length > 0 && (
            <ul className="divergences">
              {report.data.mismatches.map((m) => (
                <li key={m} className="error">{m}</li>
              ))}
            </ul>
          )}
          <p>
            <button type="button" onClick={() => download(`reconcile-${report.data.id}.json`, "application/json", JSON.stringify(report.data, null, 2))}>
              {t("Export JSON")}
            </button>{" "}
            <button type="button" onClick={() => download(`reconcile-${report.data.id}.csv`, "text/csv", reportCsv(report.data))}>
              {t("Export CSV")}
            </button>
          </p>
        </div>
      )}
    </>
  );
}
