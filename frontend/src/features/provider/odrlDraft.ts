// The ODRL document an offer's terms produce, drawn beside the offer form as the provider types.
// It mirrors dataspace/policies/odrl.py; the server builds the real one (its SHA-256 is what the
// chain pins), and the editor shows the server's document and hash once the offer is made.

export const TEE_OPERATION = "algorithm";

/** The terms of running submitted algorithms (the operation "algorithm"). */
export interface TeeTerms {
  allowSandbox: boolean;
  computeRate: bigint;
  maxCpuMillis: number;
  memoryLimitBytes: number;
  wallSeconds: number;
}

export interface OfferTerms {
  datasetId: string;
  provider: string;
  purposes: string[];
  operations: string[];
  maxCalls: number;
  pricePerCall: bigint;
  durationSeconds: number;
  privacyBudget: number;
  minCohort: number;
  nonPersonal: boolean;
  tee?: TeeTerms;
}

export function odrlDraft(terms: OfferTerms): unknown {
  const tee = terms.operations.includes(TEE_OPERATION) && terms.tee
    ? [
        { leftOperand: "redlake:allowSandbox", operator: "eq", rightOperand: terms.tee.allowSandbox },
        { leftOperand: "redlake:computeRate", operator: "eq", rightOperand: terms.tee.computeRate.toString() },
        { leftOperand: "redlake:maxCpuMillis", operator: "lteq", rightOperand: terms.tee.maxCpuMillis },
        { leftOperand: "redlake:memoryLimitBytes", operator: "lteq", rightOperand: terms.tee.memoryLimitBytes },
        { leftOperand: "redlake:wallSeconds", operator: "lteq", rightOperand: terms.tee.wallSeconds },
      ]
    : [];
  return {
    "@context": ["http://www.w3.org/ns/odrl.jsonld", { redlake: "urn:redlake:terms:" }],
    "@type": "Offer",
    uid: "urn:redlake:offer:(assigned when published)",
    assigner: terms.provider,
    target: `urn:redlake:dataset:${terms.datasetId}`,
    permission: [
      {
        action: "use",
        constraint: [
          { leftOperand: "purpose", operator: "isAnyOf", rightOperand: [...terms.purposes].sort() },
          { leftOperand: "redlake:operation", operator: "isAnyOf", rightOperand: [...terms.operations].sort() },
          { leftOperand: "count", operator: "lteq", rightOperand: terms.maxCalls },
          { leftOperand: "elapsedTime", operator: "lteq", rightOperand: `PT${terms.durationSeconds}S` },
          { leftOperand: "redlake:privacyBudget", operator: "lteq", rightOperand: terms.privacyBudget },
          { leftOperand: "redlake:minCohort", operator: "gteq", rightOperand: terms.minCohort },
          { leftOperand: "redlake:nonPersonal", operator: "eq", rightOperand: terms.nonPersonal },
          ...tee,
        ],
        duty: [{ action: "compensate", constraint: [{ leftOperand: "payAmount", operator: "eq", rightOperand: terms.pricePerCall.toString() }] }],
      },
    ],
  };
}

/** "1.5" tokens (18 decimals) to base units, exactly (no floating point). */
export function toBaseUnits(amount: string): bigint {
  const match = /^\s*(\d*)(?:\.(\d{0,18}))?\s*$/.exec(amount);
  if (!match || (match[1] === "" && !match[2])) throw new Error("not an amount");
  return BigInt(match[1] || "0") * 10n ** 18n + BigInt((match[2] ?? "").padEnd(18, "0") || "0");
}
