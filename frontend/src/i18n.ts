// English and Simplified Chinese. Keys are the English sentences themselves (gettext style), so
// English needs no table and a missing translation shows English, never a key. The choice is
// remembered in localStorage. locales.test.ts checks every sentence the code uses has Chinese.
import i18n from "i18next";
import { initReactI18next } from "react-i18next";
import zh from "./locales/zh.json";
import en from "./locales/en.json";

export const LANGUAGES: [string, string][] = [
  ["en", "English"],
  ["zh", "简体中文"],
];
const STORAGE_KEY = "redlake.language";

function initialLanguage(): string {
  try {
    const saved = localStorage.getItem(STORAGE_KEY);
    if (saved && LANGUAGES.some(([code]) => code === saved)) return saved;
  } catch {
    // storage unavailable (private mode): fall through
  }
  return typeof navigator !== "undefined" && navigator.language.toLowerCase().startsWith("zh") ? "zh" : "en";
}

export function setLanguage(code: string): void {
  try {
    localStorage.setItem(STORAGE_KEY, code);
  } catch {
    // not remembered, still switched
  }
  void i18n.changeLanguage(code);
  document.documentElement.lang = code === "zh" ? "zh-Hans" : "en";
}

// The API's error codes in the user's words (dataspace/errors.py); the sentence is then translated.
const ERROR_SENTENCES: Record<string, string> = {
  not_authenticated: "You are not logged in.",
  authentication_failed: "Your session has expired; log in again.",
  role_required: "Your account does not have the role this needs.",
  not_found: "This does not exist, or is not yours to see.",
  validation_failed: "Some fields are not valid.",
  file_too_large: "The file is larger than the space accepts.",
  duplicate_column: "The file has two columns with the same name.",
  ragged_rows: "Some rows have a different number of fields than the header.",
  invalid_encoding: "The file is not UTF-8 text.",
  bounds_invalid: "A lower bound must be smaller than its upper bound.",
  bounds_column_unknown: "A bound names a column the file does not have.",
  purpose_not_allowed: "The offer does not allow this purpose.",
  operation_not_allowed: "The offer does not allow this operation.",
  calls_exhausted: "No calls are left on this agreement.",
  budget_exhausted: "The privacy budget is spent.",
  epsilon_invalid: "The privacy loss (ε) is not valid for this dataset.",
  agreement_expired: "The agreement has expired.",
  agreement_not_active: "The agreement is not active yet.",
  invalid_operation: "The operation's parameters are not valid.",
  column_not_public: "The provider did not make this column's values public.",
  insufficient_funds: "Your wallet does not hold enough tokens for the escrow.",
  wallet_required: "Your account needs a wallet first.",
  offer_not_published: "The offer is not published on chain yet.",
  dataset_not_on_chain: "The dataset is not registered on chain yet.",
  privacy_terms_invalid: "The privacy terms are not valid for this dataset.",
  encrypted_store_not_ready: "The dataset's encrypted store is still being built.",
  broker_unavailable: "The task queue is unreachable; try again shortly.",
  network_error: "The server could not be reached.",
};

export function errorSentence(code: string): string | null {
  return ERROR_SENTENCES[code] ?? null;
}

export const ERROR_CODES = Object.keys(ERROR_SENTENCES);
export const ERROR_TEXTS = Object.values(ERROR_SENTENCES);

void i18n.use(initReactI18next).init({
  resources: { en: { translation: en }, zh: { translation: zh } },
  lng: initialLanguage(),
  fallbackLng: "en",
  keySeparator: false,
  nsSeparator: false,
  interpolation: { escapeValue: false },
  returnEmptyString: false,
});

export default i18n;
