/**
 * CSV reading and writing. Uses the npm `csv-parse` / `csv-stringify` packages until JSR's
 * `@std/csv` is reachable; swapping is these two imports.
 *
 * @module
 */
import { parse } from "csv-parse/sync";
import { stringify } from "csv-stringify/sync";

/** Parse CSV text into rows of strings (no header handling). */
export function parseCsv(text: string): string[][] {
  return parse(text, { relax_column_count: true }) as string[][];
}

/** Parse CSV text with a header row into records keyed by column name. */
export function parseCsvRecords(text: string): Record<string, string>[] {
  return parse(text, { columns: true }) as Record<string, string>[];
}

/** Serialise rows (first row may be a header) as CSV text with a trailing newline. */
export function stringifyCsv(rows: readonly (readonly unknown[])[]): string {
  return stringify(rows as unknown[][]);
}
