// Start GOV.UK Frontend's components; pages work without this (no JavaScript needed).
import { initAll } from "/static/govuk/govuk-frontend.min.js";

document.body.classList.add("govuk-frontend-supported");
initAll();
