// Validates AsyncAPI documents with the official parser (@asyncapi/parser).
//
// Usage: node validate.mjs FILE...
// Prints one JSON line per file: {"file", "valid", "errors": [...], "warnings": [...]}, and
// exits 1 when any document has an error-level diagnostic (or cannot be read), 0 otherwise.
import { readFile } from "node:fs/promises";
import { Parser, DiagnosticSeverity } from "@asyncapi/parser";

const parser = new Parser();
let failed = false;

for (const file of process.argv.slice(2)) {
  let result;
  try {
    const text = await readFile(file, "utf8");
    const { document, diagnostics } = await parser.parse(text);
    const describe = (d) => `${(d.path || []).join("/") || "<root>"}: ${d.message} [${d.code}]`;
    const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error).map(describe);
    const warnings = diagnostics
      .filter((d) => d.severity === DiagnosticSeverity.Warning)
      .map(describe);
    result = { file, valid: document !== undefined && errors.length === 0, errors, warnings };
  } catch (error) {
    result = { file, valid: false, errors: [String(error)], warnings: [] };
  }
  failed ||= !result.valid;
  console.log(JSON.stringify(result));
}

process.exit(failed ? 1 : 0);
