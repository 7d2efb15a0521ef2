// A first look at a CSV in the browser, before it is sent: its header and the type each column
// seems to have, so the provider can set bounds, buckets and public columns in the same step.
// The server profiles the whole file again; this preview decides nothing.

export type PreviewType = "numeric" | "categorical" | "text";

export interface PreviewColumn {
  name: string;
  type: PreviewType;
  min: number | null;
  max: number | null;
  distinct: number;
}

function splitLine(line: string, delimiter: string): string[] {
  const out: string[] = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quoted) {
      if (c === '"' && line[i + 1] === '"') (field += '"'), i++;
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === delimiter) out.push(field), (field = "");
    else field += c;
  }
  out.push(field);
  return out;
}

export function previewCsv(text: string, delimiter = ",", maxRows = 500): PreviewColumn[] {
  const lines = text.split(/\r?\n/);
  // The sample may end mid-line: drop the last, possibly partial, line.
  if (lines.length > 2) lines.pop();
  const header = splitLine(lines[0] ?? "", delimiter).map((h) => h.trim());
  const rows = lines.slice(1, maxRows + 1).filter((l) => l.length > 0).map((l) => splitLine(l, delimiter));
  return header.map((name, k) => {
    const values = rows.map((r) => (r[k] ?? "").trim()).filter((v) => v !== "");
    const numbers = values.map(Number).filter((n) => Number.isFinite(n));
    const distinct = new Set(values).size;
    const numeric = values.length > 0 && numbers.length === values.length;
    const type: PreviewType = numeric ? "numeric" : distinct <= 32 ? "categorical" : "text";
    return {
      name,
      type,
      min: numeric ? Math.min(...numbers) : null,
      max: numeric ? Math.max(...numbers) : null,
      distinct,
    };
  });
}

/** The types the server's parser knows (dataspace/catalog/profiling.py); a provider may correct
 * the inferred one with any of them, and the server refuses what the column cannot be read as. */
export const COLUMN_TYPES = ["integer", "float", "boolean", "categorical", "date", "text"] as const;
export type ColumnType = (typeof COLUMN_TYPES)[number];

/** How a corrected type is treated in the form: numbers get bounds, categories public values. */
export function previewTypeOf(type: ColumnType): PreviewType {
  if (type === "integer" || type === "float" || type === "boolean") return "numeric";
  return type === "categorical" ? "categorical" : "text";
}

export interface ColumnSettings {
  type: PreviewType;
  publicValues: boolean;
  lo: string;
  hi: string;
  buckets: string;
  sumsOnly: boolean;
  /** Categorical columns only: the numeric columns whose per-category sums are prepared at ingest. */
  groupBy: string[];
}

/** The upload's `encryption` field and `public_value_columns` from the provider's settings. */
export function encryptionOptions(settings: Record<string, ColumnSettings>): {
  encryption: {
    bounds: Record<string, [number, number]>;
    buckets: Record<string, number[]>;
    sums_only: string[];
    group_by: Record<string, string[]>;
  };
  publicValueColumns: string[];
  problems: string[];
} {
  const bounds: Record<string, [number, number]> = {};
  const buckets: Record<string, number[]> = {};
  const sums_only: string[] = [];
  const group_by: Record<string, string[]> = {};
  const publicValueColumns: string[] = [];
  const problems: string[] = [];
  for (const [name, s] of Object.entries(settings)) {
    if (s.type === "categorical" && s.publicValues) publicValueColumns.push(name);
    if (s.type === "categorical") {
      // A column chosen here may have been corrected to another type since: only numbers count.
      const values = (s.groupBy ?? []).filter((v) => settings[v]?.type === "numeric");
      if (values.length) group_by[name] = values;
    }
    if (s.type !== "numeric") continue;
    if (s.lo.trim() !== "" || s.hi.trim() !== "") {
      const lo = Number(s.lo);
      const hi = Number(s.hi);
      if (!Number.isFinite(lo) || !Number.isFinite(hi) || lo >= hi) problems.push(name);
      else bounds[name] = [lo, hi];
    }
    if (s.buckets.trim() !== "") {
      const edges = s.buckets.split(",").map((e) => Number(e.trim()));
      if (edges.some((e) => !Number.isFinite(e)) || edges.some((e, k) => k > 0 && e <= edges[k - 1])) problems.push(name);
      else buckets[name] = edges;
    }
    if (s.sumsOnly) sums_only.push(name);
  }
  return { encryption: { bounds, buckets, sums_only, group_by }, publicValueColumns, problems };
}
