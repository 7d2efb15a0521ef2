// The REST API as the portal uses it: one client typed by the OpenAPI document
// (`src/openapi.d.ts`, generated from /api/schema/ by `npm run openapi`), through openapi-fetch:
// every path, query, body and answer is checked by `tsc` against the server's schema. The session
// cookie (the portal's login) authenticates; the CSRF token Django put in the page goes on every
// write; every error is {"error": {"code", "message", "details"}}.
import createClient, { type Middleware } from "openapi-fetch";
import type { components, paths } from "./openapi";

export type Schemas = components["schemas"];

export interface Space {
  chain_id: number;
  rpc_url: string;
  contracts: Record<string, string>;
  token: string | null;
  custodians: { address: string; valid_from_block: number }[];
  /** The earliest block a Redlake contract was deployed at: where log reads start. */
  from_block?: number;
}

interface Boot {
  csrf: string;
  space: Space;
}

export function boot(): Boot {
  const tag = typeof document === "undefined" ? null : document.getElementById("redlake-boot");
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

const csrf: Middleware = {
  onRequest({ request }) {
    if (request.method !== "GET" && request.method !== "HEAD") request.headers.set("X-CSRFToken", boot().csrf);
    return request;
  },
};

/** The typed client. `fetch` is looked up at each call (not captured once), so a test's mock of
 * the network (msw) sees the portal's requests; the base is the page's own origin. */
export const apiClient = createClient<paths>({
  baseUrl: typeof location === "undefined" ? "" : location.origin,
  credentials: "same-origin",
  headers: { Accept: "application/json" },
  fetch: (request: Request) => globalThis.fetch(request),
});
apiClient.use(csrf);

function errorOf(status: number, statusText: string, body: unknown): ApiError {
  const error = (body as { error?: { code: string; message: string; details?: unknown } } | null | undefined)?.error;
  if (error?.code) return new ApiError(status, error.code, error.message, error.details ?? null);
  return new ApiError(status, `http_${status}`, statusText);
}

/** The answer's data, or its error envelope thrown as an ApiError (for TanStack Query). */
export async function unwrap<T>(call: Promise<{ data?: T; error?: unknown; response: Response }>): Promise<T> {
  let result: { data?: T; error?: unknown; response: Response };
  try {
    result = await call;
  } catch {
    throw new ApiError(0, "network_error", "The request did not reach the server.");
  }
  if (!result.response.ok || result.data === undefined) throw errorOf(result.response.status, result.response.statusText, result.error);
  return result.data;
}

/** An answer's exact text: a receipt is shared as the server wrote it, since its hashes cover
 * Python's number formatting (1e-09, 2.0), which a JavaScript round trip would change. */
export async function jobText(jobId: string): Promise<string> {
  const { data, response } = await apiClient.GET("/api/jobs/{job_id}/", { params: { path: { job_id: jobId } }, parseAs: "text" });
  if (!response.ok || data === undefined) throw errorOf(response.status, response.statusText, null);
  return data;
}

/** A multipart upload through XMLHttpRequest, the one browser API that reports bytes sent; its
 * fields are the schema's `DatasetUploadRequest` and its answer the schema's `IngestOutput`. */
export type UploadFields = Omit<Schemas["DatasetUploadRequest"], "file" | "encryption" | "column_types" | "description" | "licence" | "delimiter"> &
  Partial<Pick<Schemas["DatasetUploadRequest"], "description" | "licence" | "delimiter">> & {
    encryption?: Record<string, unknown>;
    column_types?: Record<string, string>;
  };

export function uploadForm(fields: UploadFields, file: Blob, fileName: string): FormData {
  const form = new FormData();
  for (const [name, value] of Object.entries(fields)) {
    if (value === undefined || value === null) continue;
    if (Array.isArray(value)) value.forEach((item) => form.append(name, String(item)));
    else if (typeof value === "object") form.append(name, JSON.stringify(value));
    else form.append(name, String(value));
  }
  form.append("file", file, fileName);
  return form;
}

export function uploadDataset(form: FormData, onProgress: (sent: number, total: number) => void): Promise<Ingest> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/datasets/");
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
      if (xhr.status >= 400) reject(errorOf(xhr.status, xhr.statusText, body));
      else resolve(body as Ingest);
    };
    xhr.send(form);
  });
}

/** An answer read with the narrower shape the portal relies on for the schema's JSON fields. */
export function narrowed<T>(answer: Promise<unknown>): Promise<T> {
  return answer as Promise<T>;
}

// The answers' types are the schema's. Where the schema says only "JSON" (`unknown`: a model's
// JSONField), the portal narrows the field to the shape the API documents in prose.
export type ChainWrite = Schemas["ChainWrite"];
export type Me = Schemas["Me"];
export type Ingest = Schemas["IngestOutput"];
export type Agreement = Schemas["AgreementOutput"];
export interface Page<T> {
  count: number;
  results: T[];
}
export interface Column {
  name: string;
  type: string;
  null_fraction: number;
  cardinality?: number;
  values?: string[];
}
/** A dataset as anyone sees it (`DatasetOutput`); its provider's own view (`OwnedDatasetOutput`)
 * adds the exact row count and the public-value columns. */
export type Dataset = Omit<Schemas["DatasetOutput"], "keywords" | "profile"> &
  Partial<Pick<Schemas["OwnedDatasetOutput"], "row_count">> & {
    keywords: string[];
    profile: { rows_approx: number; columns: Column[] };
    public_value_columns?: string[];
  };
export type Offer = Omit<Schemas["OfferOutput"], "purposes" | "operations"> & { purposes: string[]; operations: string[] };
export interface ParameterSpec {
  type?: string;
  format?: string;
  description?: string;
  enum?: string[];
  items?: { type?: string };
  [key: string]: unknown;
}
export type Operation = Omit<Schemas["OperationOutput"], "parameters"> & {
  parameters: { type: "object"; properties: Record<string, ParameterSpec>; required?: string[] };
};
export type Job = Omit<Schemas["JobOutput"], "params" | "receipt"> & { params: Record<string, unknown>; receipt: Record<string, unknown> | null };
export type AuditJob = Omit<Schemas["AuditJobOutput"], "receipt"> & { receipt: Record<string, unknown> | null };
