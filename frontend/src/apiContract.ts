// The portal against the API's contract. Every call is typed by the generated schema
// (src/openapi.d.ts, through openapi-fetch in src/api.ts); the types below narrow the schema's
// free-form JSON fields, and this check keeps each of their keys a key of the schema's object, so
// a field renamed or removed on the server fails `tsc`. `make test` regenerates openapi.d.ts and
// fails when the checked-in copy is stale.
import type { Agreement, AuditJob, ChainWrite, Dataset, Ingest, Job, Me, Offer } from "./api";
import type { components } from "./openapi";

type Schemas = components["schemas"];
/** `true` when every key of the portal's type `T` is a key of the schema `S`, else the missing keys. */
type FieldsExist<T, S> = [Exclude<keyof T, keyof S>] extends [never] ? true : Exclude<keyof T, keyof S>;

export const contract: [
  FieldsExist<Me, Schemas["Me"]>,
  FieldsExist<ChainWrite, Schemas["ChainWrite"]>,
  FieldsExist<Dataset, Schemas["OwnedDatasetOutput"]>,
  FieldsExist<Ingest, Schemas["IngestOutput"]>,
  FieldsExist<Offer, Schemas["OfferOutput"]>,
  FieldsExist<Agreement, Schemas["AgreementOutput"]>,
  FieldsExist<Job, Schemas["JobOutput"]>,
  FieldsExist<AuditJob, Schemas["AuditJobOutput"]>,
] = [true, true, true, true, true, true, true, true];
