import type { ReactNode } from "react";
import { useTranslation } from "react-i18next";
import { ApiError } from "../../api";
import { errorSentence } from "../../i18n";

export function Loading() {
  const { t } = useTranslation();
  return (
    <p role="status" aria-live="polite" className="muted">
      {t("Loading…")}
    </p>
  );
}

export function Empty({ children }: { children: ReactNode }) {
  return <p className="muted empty">{children}</p>;
}

/** An API error in the user's words, with its stable code for support. */
export function ErrorBox({ error }: { error: unknown }) {
  const { t } = useTranslation();
  if (!error) return null;
  const code = error instanceof ApiError ? error.code : "error";
  const known = errorSentence(code);
  const message = known ? t(known) : error instanceof Error ? error.message : String(error);
  return (
    <p role="alert" className="error" data-code={code}>
      {message} <code>{code}</code>
    </p>
  );
}

export function Section({ title, children, id }: { title: string; children: ReactNode; id?: string }) {
  return (
    <section aria-labelledby={id ? `${id}-h` : undefined} id={id}>
      <h2 id={id ? `${id}-h` : undefined}>{title}</h2>
      {children}
    </section>
  );
}

export function TxLink({ hash }: { hash: string | null | undefined }) {
  if (!hash) return <span className="muted">—</span>;
  return (
    <a href={`#/explorer/tx/${hash}`} className="mono" title={hash}>
      {hash.slice(0, 10)}…
    </a>
  );
}

export function Status({ value = "" }: { value?: string }) {
  const { t } = useTranslation();
  return <span className={`status status-${value}`}>{t(value)}</span>;
}

/** Token base units (18 decimals) as a readable amount. */
export function tokens(base: string | bigint): string {
  const value = BigInt(base);
  const whole = value / 10n ** 18n;
  const frac = (value % 10n ** 18n).toString().padStart(18, "0").slice(0, 4).replace(/0+$/, "");
  return frac ? `${whole}.${frac}` : `${whole}`;
}
