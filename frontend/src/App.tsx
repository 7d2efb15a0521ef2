import { lazy, Suspense } from "react";
import { useQuery } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import type { Hex } from "viem";
import { apiClient, unwrap, type Me } from "./api";
import { LANGUAGES, setLanguage } from "./i18n";
import { href, useRoute } from "./router";
import { ErrorBox, Loading } from "./features/common/ui";
import { ProviderDashboard } from "./features/provider/Dashboard";
import { Upload } from "./features/provider/Upload";
import { Algorithms } from "./features/provider/Algorithms";
import { OfferEditor } from "./features/provider/OfferEditor";
import { Catalogue } from "./features/consumer/Catalogue";
import { DatasetPage } from "./features/consumer/DatasetPage";
import { JobList, JobPage, RunJob } from "./features/consumer/Jobs";

// The explorer (viem and the ABIs) loads only when an explorer page is opened.
const Explorer = lazy(() => import("./features/explorer/Explorer").then((m) => ({ default: m.Explorer })));
const TxPage = lazy(() => import("./features/explorer/TxPage").then((m) => ({ default: m.TxPage })));
const AgreementTimeline = lazy(() => import("./features/explorer/AgreementTimeline").then((m) => ({ default: m.AgreementTimeline })));
const AuditJob = lazy(() => import("./features/explorer/AuditJob").then((m) => ({ default: m.AuditJob })));
const Reconcile = lazy(() => import("./features/explorer/Reconcile").then((m) => ({ default: m.Reconcile })));

function home(me: Me): string[] {
  if (me.roles.includes("provider")) return ["provider"];
  if (me.roles.includes("consumer")) return ["catalogue"];
  return ["explorer"];
}

function Page({ route, me }: { route: string[]; me: Me }) {
  const [section, a, b] = route.length ? route : home(me);
  switch (section) {
    case "provider":
      if (a === "upload") return <Upload />;
      if (a === "offer") return <OfferEditor datasetId={b} />;
      if (a === "algorithms") return <Algorithms />;
      return <ProviderDashboard />;
    case "catalogue":
      return <Catalogue />;
    case "datasets":
      return <DatasetPage id={a} me={me} />;
    case "consumer":
      if (a === "run") return <RunJob agreementId={b} />;
      if (a === "jobs" && b) return <JobPage id={b} />;
      return <JobList />;
    case "explorer":
      if (a === "tx") return <TxPage hash={b as Hex} />;
      if (a === "agreement") return <AgreementTimeline id={b} />;
      if (a === "job") return <AuditJob jobId={b as Hex} />;
      if (a === "reconcile") return <Reconcile />;
      return <Explorer />;
    default:
      return <ProviderDashboard />;
  }
}

export function App() {
  const { t, i18n } = useTranslation();
  const route = useRoute();
  const me = useQuery({ queryKey: ["me"], queryFn: () => unwrap(apiClient.GET("/api/me/")) });
  return (
    <>
      <a className="skip" href="#main">
        {t("Skip to content")}
      </a>
      <header>
        <a className="brand" href="#/">
          Redlake
        </a>
        <nav aria-label={t("Main")}>
          {me.data?.roles.includes("provider") && <a href={href("provider")}>{t("My data")}</a>}
          <a href={href("catalogue")}>{t("Catalogue")}</a>
          {me.data?.roles.includes("consumer") && <a href={href("consumer", "jobs")}>{t("My jobs")}</a>}
          <a href={href("explorer")}>{t("Explorer")}</a>
        </nav>
        <div className="who">
          <label>
            <span className="visually-hidden">{t("Language")}</span>
            <select value={i18n.resolvedLanguage} onChange={(e) => setLanguage(e.target.value)} aria-label={t("Language")}>
              {LANGUAGES.map(([code, name]) => (
                <option key={code} value={code}>
                  {name}
                </option>
              ))}
            </select>
          </label>{" "}
          {me.data && (
            <span>
              {me.data.username} ({me.data.roles.map((r) => t(r)).join(", ")})
            </span>
          )}{" "}
          <a href="/logout/" onClick={(e) => (e.preventDefault(), logout())}>
            {t("Log out")}
          </a>
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        {me.isPending ? <Loading /> : me.error ? <ErrorBox error={me.error} /> : (
          <Suspense fallback={<Loading />}>
            <Page route={route} me={me.data} />
          </Suspense>
        )}
      </main>
    </>
  );
}

function logout() {
  // Django's LogoutView takes a POST with the CSRF token.
  const form = Object.assign(document.createElement("form"), { method: "post", action: "/logout/" });
  const token = Object.assign(document.createElement("input"), { type: "hidden", name: "csrfmiddlewaretoken", value: JSON.parse(document.getElementById("redlake-boot")!.textContent!).csrf });
  form.append(token);
  document.body.append(form);
  form.submit();
}
