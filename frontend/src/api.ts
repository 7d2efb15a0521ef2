// The REST API as the portal uses it: the session cookie (the portal's login) and the CSRF token
// Django put in the page; every error is {"error": {"code", "message", "details"}}.

export interface Space {
  chain_id: number;
  rpc_url: string;
  contracts: Record<string, string>;
  token: string | null;
  custodians: { address: string; valid_from_block: number }[];
}

interface Boot {
  csrf: string;
  space: Space;
}

export function boot(): Boot {
  const tag = document.getElementById("redlake-boot");
  if (!tag?.textContent) return { csrf: "", space: { chain_id: 0, rpc_url: "", contracts: {}, token: null, custodians: [] } };
  return JSON.parse(tag.textContent) as Boot;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: unknown = null,
  ) {
    super(message);
  }
}

async function errorOf(response: Response): Promise<ApiError> {
  try {
    const body = (await response.json()) as { error?: { code: string; message: string; details?: unknown } };
    if (body.error) return new ApiError(response.status, body.error.code, body.error.message, body.error.details);
  } catch {
    // not JSON: fall through
  }
  return new ApiError(response.status, `http_${response.status}`, response.statusText);
}

export async function api<T>(path: string, init: { method?: string; body?: unknown; headers?: Record<string, string> } = {}): Promise<T> {
  const method = init.method ?? "GET";
  const headers: Record<string, string> = { Accept: "application/json", ...(init.headers ?? {}) };
  if (method !== "GET") headers["X-CSRFToken"] = boot().csrf;
  if (init.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(`/api/${path}`, {
    method,
    headers,
    credentials: "same-origin",
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  });
  if (!response.ok) throw await errorOf(response);
  return (await response.json()) as T;
}

/** An answer's exact text: a receipt is shared as the server wrote it, since its hashes cover
 * Python's number formatting (1e-09, 2.0), which a JavaScript round trip would change. */
export async function apiText(path: string): Promise<string> {
  const response = await fetch(`/api/${path}`, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  if (!response.ok) throw await errorOf(response);
  return response.text();
}

export interface Page<T> {
  count: number;
  results: T[];
}

/** A multipart upload through XMLHttpRequest, the one browser API that reports bytes sent. */
export function uploadWithProgress<T>(path: string, form: FormData, onProgress: (sent: number, total: number) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/api/${path}`);
    xhr.setRequestHeader("X-CSRFToken", boot().csrf);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.onprogress = (event) => onProgress(event.loaded, event.lengthComputable ? event.total : 0);
    xhr.onerror = () => reject(new ApiError(0, "network_error", "The upload did not reach the server."));
    xhr.onload = () => {
      let body: unknown = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = null;
      }
      const error = (body as { error?: { code: string; message: string; details?: unknown } } | null)?.error;
      if (xhr.status >= 400) reject(new ApiError(xhr.status, error?.code ?? `http_${xhr.status}`, error?.message ?? xhr.statusText, error?.details));
      else resolve(body as T);
    };
    xhr.send(form);
  });
}

// The shapes the portal reads (the OpenAPI document at /api/schema/ is the reference).
export interface ChainWrite {
  status: string;
  tx_hash: string | null;
  block_number: number | null;
  revert_reason: string | null;
}
export interface Me {
  username: string;
  roles: string[];
  wallet: { kind: string; address: string } | null;
}
export interface Column {
  name: string;
  type: string;
  null_fraction: number;
  cardinality?: number;
  values?: string[];
}
export interface Dataset {
  id: string;
  title: string;
  description: string;
  keywords: string[];
  provider: string;
  file_format: string;
  content_sha256: string;
  size_bytes: number;
  non_personal: boolean;
  privacy_epsilon: number;
  profile: { rows_approx: number; columns: Column[] };
  chain: ChainWrite | null;
  created_at: string;
  public_value_columns?: string[];
}
export interface Ingest {
  id: string;
  status: string;
  progress: number;
  file_name: string;
  dataset: string | null;
  error: { code: string; message: string } | null;
  created_at: string;
}
export interface Offer {
  id: string;
  dataset: string;
  provider: string;
  purposes: string[];
  operations: string[];
  max_calls: number;
  price_per_call: string;
  duration_seconds: number;
  privacy_budget: number;
  min_cohort: number;
  policy: unknown;
  policy_hash: string;
  status: string;
  failure: string;
  chain_offer_id: number | null;
  publish_tx: ChainWrite | null;
  created_at: string;
}
export interface Agreement {
  id: string;
  offer: string;
  consumer: string;
  calls: number;
  amount: string;
  status: string;
  failure: string;
  chain_agreement_id: number | null;
  expires_at: string | null;
  accept_tx: ChainWrite | null;
  created_at: string;
}
export interface Operation {
  name: string;
  description: string;
  depth: number;
  parameters: { type: "object"; properties: Record<string, ParameterSpec>; required?: string[] };
  output: string;
}
export interface ParameterSpec {
  type?: string;
  description?: string;
  enum?: string[];
  items?: { type?: string };
  [key: string]: unknown;
}
export interface Job {
  id: string;
  status: string;
  agreement: string;
  dataset: string;
  operation: string;
  params: Record<string, unknown>;
  purpose: string;
  epsilon: number;
  chain_job_id: string;
  timestamps: Record<string, string | null>;
  transactions: { record_usage: ChainWrite | null; settle: ChainWrite | null; refund: ChainWrite | null };
  result: unknown;
  error_bounds: unknown;
  result_hash: string;
  receipt: Record<string, unknown> | null;
  failure: { code: string; message: string } | null;
}
export interface AuditJob {
  id: string;
  status: string;
  agreement: string;
  chain_agreement_id: number | null;
  chain_offer_id: number | null;
  dataset: string;
  dataset_title: string;
  operation: string;
  purpose: string;
  epsilon: number;
  price: string;
  chain_job_id: string;
  timestamps: Record<string, string | null>;
  transactions: { record_usage: ChainWrite | null; settle: ChainWrite | null; refund: ChainWrite | null };
  result_hash: string;
  receipt: Record<string, unknown> | null;
  failure_code: string;
}
