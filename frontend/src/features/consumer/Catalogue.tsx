import { useState } from "react";
import { useQuery } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { apiClient, narrowed, unwrap, type Dataset, type Page } from "../../api";
import { href } from "../../router";
import { Empty, ErrorBox, Loading } from "../common/ui";

export function Catalogue() {
  const { t } = useTranslation();
  const [search, setSearch] = useState("");
  const [keyword, setKeyword] = useState("");
  const [format, setFormat] = useState("");
  const query = { limit: 100, search: search || undefined, keyword: keyword || undefined, format: (format || undefined) as "csv" | "parquet" | undefined };
  const datasets = useQuery({
    queryKey: ["catalogue", query],
    queryFn: () => narrowed<Page<Dataset>>(unwrap(apiClient.GET("/api/datasets/", { params: { query } }))),
  });
  return (
    <>
      <h1>{t("Catalogue")}</h1>
      <form className="filters" role="search" onSubmit={(e) => e.preventDefault()}>
        <label>
          {t("Search")} <input type="search" value={search} onChange={(e) => setSearch(e.target.value)} />
        </label>
        <label>
          {t("Keyword")} <input value={keyword} onChange={(e) => setKeyword(e.target.value)} />
        </label>
        <label>
          {t("Format")}{" "}
          <select value={format} onChange={(e) => setFormat(e.target.value)}>
            <option value="">{t("any")}</option>
            <option value="csv">CSV</option>
            <option value="parquet">Parquet</option>
          </select>
        </label>
      </form>
      {datasets.isPending ? <Loading /> : datasets.error ? <ErrorBox error={datasets.error} /> : datasets.data.results.length === 0 ? <Empty>{t("No dataset matches.")}</Empty> : (
        <ul className="cards">
          {datasets.data.results.map((d) => (
            <li key={d.id}>
              <a href={href("datasets", d.id)}>
                <strong>{d.title}</strong>
              </a>
              <p>{d.description}</p>
              <p className="muted">
                {d.provider} · ≈{d.profile.rows_approx} {t("rows")} · {d.profile.columns.length} {t("columns")} · {d.non_personal ? t("non-personal") : `ε ${d.privacy_epsilon}`}
                {d.keywords.length > 0 && ` · ${d.keywords.join(", ")}`}
              </p>
            </li>
          ))}
        </ul>
      )}
    </>
  );
}
