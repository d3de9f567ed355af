/**
 * A small progress bar on stderr: bytes mode (sizes, rate, ETA) or count mode (n/total, rate,
 * ETA, extra fields such as the loss). On a terminal it redraws one line at most ~10 times a
 * second; elsewhere (CI logs, pipes) it prints an occasional full line.
 *
 * @module
 */

/** Options of {@link ProgressBar}. */
export interface ProgressOptions {
  /** Total units (bytes or items); 0 or less when unknown (no percentage or ETA). */
  total: number;
  /** Text before the bar, e.g. the file name. */
  label?: string;
  /** `"B"` for bytes mode (human sizes); anything else is a count unit, default `"it"`. */
  unit?: string;
  /** Minimum milliseconds between redraws on a terminal (default 100). */
  minIntervalMs?: number;
  /** Minimum milliseconds between lines when not on a terminal (default 10 000). */
  logIntervalMs?: number;
  /** Where text goes (default: stderr). */
  write?: (text: string) => void;
  /** Whether the output is a terminal (default: `Deno.stderr.isTerminal()`). */
  isTTY?: boolean;
  /** Clock in milliseconds (default `performance.now`), for tests. */
  now?: () => number;
  /** Print nothing at all. */
  silent?: boolean;
}

/** Human size with binary prefixes: `1.5 MiB`. */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let u = 0;
  while (n >= 1024 && u < units.length - 1) {
    n /= 1024;
    u++;
  }
  return u === 0 ? `${n.toFixed(0)} B` : `${n.toFixed(n < 10 ? 2 : n < 100 ? 1 : 0)} ${units[u]}`;
}

/** Duration as `m:ss` or `h:mm:ss`. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const mm = h ? String(m).padStart(2, "0") : String(m);
  return `${h ? `${h}:` : ""}${mm}:${String(r).padStart(2, "0")}`;
}

function defaultWrite(text: string): void {
  Deno.stderr.writeSync(new TextEncoder().encode(text));
}

function stderrIsTTY(): boolean {
  try {
    return Deno.stderr.isTerminal();
  } catch {
    return false;
  }
}

/** Progress display for long work (downloads, epochs, evaluation). */
export class ProgressBar {
  readonly #total: number;
  readonly #label: string;
  readonly #bytes: boolean;
  readonly #unit: string;
  readonly #minInterval: number;
  readonly #logInterval: number;
  readonly #write: (text: string) => void;
  readonly #tty: boolean;
  readonly #now: () => number;
  readonly #silent: boolean;
  readonly #start: number;
  #value = 0;
  #lastDraw = -Infinity;
  #fields: Record<string, string | number> = {};
  #finished = false;
  #lastLen = 0;

  /** Start a bar (the clock starts now); see {@link ProgressOptions}. */
  constructor(opts: ProgressOptions) {
    this.#total = opts.total > 0 ? opts.total : 0;
    this.#label = opts.label ?? "";
    this.#bytes = opts.unit === "B";
    this.#unit = opts.unit ?? "it";
    this.#minInterval = opts.minIntervalMs ?? 100;
    this.#logInterval = opts.logIntervalMs ?? 10_000;
    this.#write = opts.write ?? defaultWrite;
    this.#tty = opts.isTTY ?? stderrIsTTY();
    this.#now = opts.now ?? (() => performance.now());
    this.#silent = opts.silent ?? false;
    this.#start = this.#now();
    this.#lastDraw = this.#tty ? -Infinity : this.#start;
  }

  /** Units done so far. */
  get value(): number {
    return this.#value;
  }

  /** Advance by `n` units (default 1) and optionally set extra fields shown at the end. */
  tick(n = 1, fields?: Record<string, string | number>): void {
    this.#value += n;
    if (fields) this.#fields = { ...this.#fields, ...fields };
    this.#maybeDraw();
  }

  /** Set the absolute progress (e.g. bytes already on disk when resuming). */
  update(value: number, fields?: Record<string, string | number>): void {
    this.#value = value;
    if (fields) this.#fields = { ...this.#fields, ...fields };
    this.#maybeDraw();
  }

  /** Draw the final state and end the line. Safe to call twice. */
  done(): void {
    if (this.#finished) return;
    this.#finished = true;
    if (this.#silent) return;
    const line = this.render();
    if (this.#tty) this.#write(`\r${line.padEnd(this.#lastLen)}\n`);
    else this.#write(`${line}\n`);
  }

  #maybeDraw(): void {
    if (this.#silent || this.#finished) return;
    const t = this.#now();
    const interval = this.#tty ? this.#minInterval : this.#logInterval;
    if (t - this.#lastDraw < interval) return;
    this.#lastDraw = t;
    const line = this.render();
    if (this.#tty) {
      this.#write(`\r${line.padEnd(this.#lastLen)}`);
      this.#lastLen = line.length;
    } else this.#write(`${line}\n`);
  }

  /** The current status line (without control characters). */
  render(): string {
    const elapsed = Math.max(1e-9, (this.#now() - this.#start) / 1000);
    const rate = this.#value / elapsed;
    const parts: string[] = [];
    if (this.#label) parts.push(this.#label);
    const fmt = (v: number) => this.#bytes ? formatBytes(v) : String(Math.round(v));
    if (this.#total) {
      const frac = Math.min(1, this.#value / this.#total);
      const width = 20;
      const full = Math.round(frac * width);
      parts.push(
        `${(frac * 100).toFixed(0).padStart(3)}% [${"#".repeat(full)}${".".repeat(width - full)}]`,
      );
      parts.push(`${fmt(this.#value)}/${fmt(this.#total)}`);
    } else parts.push(fmt(this.#value));
    parts.push(
      this.#bytes ? `${formatBytes(rate)}/s` : `${rate.toFixed(rate < 10 ? 2 : 1)} ${this.#unit}/s`,
    );
    if (this.#total && rate > 0) {
      const remain = Math.max(0, this.#total - this.#value) / rate;
      parts.push(
        this.#finished ? `in ${formatDuration(elapsed)}` : `ETA ${formatDuration(remain)}`,
      );
    }
    for (const [k, v] of Object.entries(this.#fields)) {
      parts.push(`${k}=${typeof v === "number" ? +v.toPrecision(5) : v}`);
    }
    return parts.join("  ");
  }
}
