// Usage over time: calls per day per dataset, revenue and privacy loss spent (settled jobs).
// Loaded on demand so the charting library is not in the portal's first load.
import { Bar, BarChart, CartesianGrid, Legend, Line, LineChart, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";
import { useTranslation } from "react-i18next";
import type { AuditJob } from "../../api";

const PAID = new Set(["settled", "withheld"]);

export function usageSeries(jobs: AuditJob[]) {
  const days = new Map<string, { day: string; revenue: number; epsilon: number; [dataset: string]: number | string }>();
  const datasets = new Set<string>();
  for (const job of jobs) {
    if (!PAID.has(job.status)) continue;
    const day = (job.timestamps.settled ?? job.timestamps.withheld ?? job.timestamps.requested ?? "").slice(0, 10);
    const row = days.get(day) ?? { day, revenue: 0, epsilon: 0 };
    row[job.dataset_title] = ((row[job.dataset_title] as number | undefined) ?? 0) + 1;
    row.revenue += Number(BigInt(job.price) / 10n ** 14n) / 1e4;
    row.epsilon += job.epsilon ?? 0;
    datasets.add(job.dataset_title);
    days.set(day, row);
  }
  return { rows: [...days.values()].sort((a, b) => a.day.localeCompare(b.day)), datasets: [...datasets] };
}

const COLOURS = ["#b22222", "#1f6f8b", "#6a4c93", "#2a9d8f", "#e76f51"];

export default function UsageCharts({ jobs }: { jobs: AuditJob[] }) {
  const { t } = useTranslation();
  const { rows, datasets } = usageSeries(jobs);
  const total = rows.reduce((n, r) => n + datasets.reduce((m, d) => m + ((r[d] as number | undefined) ?? 0), 0), 0);
  return (
    <div className="charts" data-testid="usage-charts" data-calls={total}>
      <figure>
        <figcaption>{t("Calls per day")} ({total})</figcaption>
        <ResponsiveContainer width="100%" height={200}>
          <BarChart data={rows}>
            <CartesianGrid strokeDasharray="3 3" />
            <XAxis dataKey="day" />
            <YAxis allowDecimals={false} />
            <Tooltip />
            <Legend />
            {datasets.map((d, k) => (
              <Bar key={d} dataKey={d} stackId="calls" fill={COLOURS[k % COLOURS.length]} isAnimationActive={false} />
            ))}
          </BarChart>
        </ResponsiveContainer>
      </figure>
      <figure>
        <figcaption>{t("Revenue and privacy loss per day")}</figcaption>
        <ResponsiveContainer width="100%" height={200}>
          <LineChart data={rows}>
            <CartesianGrid strokeDasharray="3 3" />
            <XAxis dataKey="day" />
            <YAxis yAxisId="r" />
            <YAxis yAxisId="e" orientation="right" />
            <Tooltip />
            <Legend />
            <Line yAxisId="r" dataKey="revenue" name={t("Revenue")} stroke="#b22222" isAnimationActive={false} />
            <Line yAxisId="e" dataKey="epsilon" name={t("ε spent")} stroke="#1f6f8b" isAnimationActive={false} />
          </LineChart>
        </ResponsiveContainer>
      </figure>
    </div>
  );
}
