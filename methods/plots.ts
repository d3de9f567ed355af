/**
 * Plots of a continual-learning run as self-contained SVG (pure TypeScript, no DOM): the accuracy
 * matrix as a heatmap with the values in the cells, and each dataset's accuracy across the tasks.
 * PNG files are rendered from the SVG with `sharp` (librsvg); where `sharp` cannot load, only the
 * SVG is written, and where no font is found the PNG lacks its labels (a warning says so).
 *
 * @module
 */
import { writeFileAtomic } from "../clip/formats/safetensors.ts";
import { loadSharp as loadSharpModule } from "../clip/images/image.ts";
import type { AccuracyMatrix } from "./metrics.ts";

const FONT = "DejaVu Sans, Arial, Helvetica, sans-serif";

/** Escape text for SVG/XML content and attributes. */
export function xmlEscape(s: string): string {
  return s.replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!,
  );
}

const VIRIDIS: [number, number, number][] = [
  [68, 1, 84],
  [72, 40, 120],
  [62, 74, 137],
  [49, 104, 142],
  [38, 130, 142],
  [31, 158, 137],
  [53, 183, 121],
  [109, 205, 89],
  [180, 222, 44],
  [253, 231, 37],
];

/** Viridis colour of `t` ∈ [0, 1] as `#rrggbb` (clamped; NaN → light grey). */
export function viridis(t: number): string {
  if (!Number.isFinite(t)) return "#dddddd";
  const x = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const f = x - i;
  const c = VIRIDIS[i].map((v, k) => Math.round(v + f * (VIRIDIS[i + 1][k] - v)));
  return `#${c.map((v) => v.toString(16).padStart(2, "0")).join("")}`;
}

const PALETTE = [
  "#1f77b4",
  "#ff7f0e",
  "#2ca02c",
  "#d62728",
  "#9467bd",
  "#8c564b",
  "#e377c2",
  "#7f7f7f",
  "#bcbd22",
  "#17becf",
  "#393b79",
  "#637939",
  "#8c6d31",
  "#843c39",
  "#7b4173",
  "#3182bd",
  "#e6550d",
  "#31a354",
];

function fmt(v: number, decimals: number): string {
  return Number.isFinite(v) ? v.toFixed(decimals) : "–";
}

function approxTextWidth(s: string, size: number): number {
  return s.length * size * 0.6;
}

/** Options of {@linkcode heatmapSvg}. */
export interface HeatmapOptions {
  /** Title above the plot. */
  title?: string;
  /** Cell size in px (default 52). */
  cell?: number;
  /** Decimals of the printed values (default 1). */
  decimals?: number;
  /** Value range mapped to the colour scale (default [0, 100]). */
  range?: [number, number];
}

/**
 * The accuracy matrix as an SVG heatmap: rows = zero-shot (when present) then "after <task>",
 * columns = evaluated datasets, each cell coloured (viridis) and labelled with its value.
 */
export function heatmapSvg(m: AccuracyMatrix, opts: HeatmapOptions = {}): string {
  const cell = opts.cell ?? 52;
  const decimals = opts.decimals ?? 1;
  const [lo, hi] = opts.range ?? [0, 100];
  const rows: { label: string; values: number[] }[] = [];
  if (m.zeroShot) rows.push({ label: "zero-shot", values: m.zeroShot });
  m.tasks.forEach((t, i) => rows.push({ label: `after ${t}`, values: m.values[i] ?? [] }));
  const labelSize = 12;
  const left = 16 + Math.max(...rows.map((r) => approxTextWidth(r.label, labelSize)), 40);
  const colLabel = Math.max(...m.datasets.map((d) => approxTextWidth(d, labelSize)), 20);
  const titleH = opts.title ? 30 : 8;
  const top = titleH + colLabel * Math.SQRT1_2 + 16;
  const legendW = 80;
  const width = Math.ceil(left + m.datasets.length * cell + legendW);
  const height = Math.ceil(top + rows.length * cell + 16);
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
      `viewBox="0 0 ${width} ${height}" font-family="${FONT}">`,
  );
  out.push(`<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`);
  if (opts.title) {
    out.push(
      `<text x="${width / 2}" y="20" font-size="15" font-weight="bold" text-anchor="middle">${
        xmlEscape(opts.title)
      }</text>`,
    );
  }
  m.datasets.forEach((d, j) => {
    const x = left + j * cell + cell / 2;
    const y = top - 6;
    out.push(
      `<text x="${x}" y="${y}" font-size="${labelSize}" transform="rotate(-45 ${x} ${y})">${
        xmlEscape(d)
      }</text>`,
    );
  });
  const highlights: string[] = [];
  rows.forEach((r, i) => {
    const y = top + i * cell;
    out.push(
      `<text x="${left - 8}" y="${y + cell / 2 + 4}" font-size="${labelSize}" text-anchor="end">${
        xmlEscape(r.label)
      }</text>`,
    );
    m.datasets.forEach((d, j) => {
      const v = r.values[j];
      const t = (v - lo) / (hi - lo);
      const x = left + j * cell;
      const trained = r.label === `after ${d}`;
      out.push(
        `<rect class="cell" x="${x}" y="${y}" width="${cell}" height="${cell}" fill="${
          viridis(t)
        }" ` +
          `stroke="#ffffff" stroke-width="1"/>`,
      );
      if (trained) {
        highlights.push(
          `<rect class="trained" x="${x + 1}" y="${y + 1}" width="${cell - 2}" height="${
            cell - 2
          }" ` +
            `fill="none" stroke="#ff3030" stroke-width="2"/>`,
        );
      }
      out.push(
        `<text class="value" x="${x + cell / 2}" y="${y + cell / 2 + 4}" font-size="${
          Math.round(cell / 4.3)
        }" ` +
          `text-anchor="middle" fill="${Number.isFinite(t) && t > 0.6 ? "#000000" : "#ffffff"}">${
            fmt(v, decimals)
          }</text>`,
      );
    });
  });
  out.push(...highlights);
  // colour bar
  const bx = left + m.datasets.length * cell + 16;
  const bh = rows.length * cell;
  const steps = 20;
  for (let s = 0; s < steps; s++) {
    out.push(
      `<rect x="${bx}" y="${top + (bh * s) / steps}" width="14" height="${
        bh / steps + 0.5
      }" fill="${viridis(1 - (s + 0.5) / steps)}"/>`,
    );
  }
  out.push(`<text x="${bx + 18}" y="${top + 10}" font-size="11">${fmt(hi, 0)}</text>`);
  out.push(`<text x="${bx + 18}" y="${top + bh}" font-size="11">${fmt(lo, 0)}</text>`);
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}

/** Options of {@linkcode accuracyCurvesSvg}. */
export interface CurvesOptions {
  /** Title above the plot. */
  title?: string;
  /** Width in px (default 820). */
  width?: number;
  /** Height in px (default 440). */
  height?: number;
  /** Y range (default [0, 100]). */
  range?: [number, number];
}

/**
 * Each dataset's accuracy across the sequence as an SVG line plot: x = zero-shot (when present)
 * then after each task, y = accuracy; a larger marker where the dataset itself is trained.
 */
export function accuracyCurvesSvg(m: AccuracyMatrix, opts: CurvesOptions = {}): string {
  const width = opts.width ?? 820;
  const height = opts.height ?? 440;
  const [lo, hi] = opts.range ?? [0, 100];
  const stages = [...(m.zeroShot ? ["zero-shot"] : []), ...m.tasks];
  const series = m.datasets.map((d, j) => ({
    name: d,
    ys: [...(m.zeroShot ? [m.zeroShot[j]] : []), ...m.values.map((r) => r[j])],
    trainedAt: m.tasks.indexOf(d) + (m.zeroShot ? 1 : 0),
  }));
  const legendW = 20 + Math.max(...m.datasets.map((d) => approxTextWidth(d, 11)), 30) + 20;
  const maxTick = Math.max(...stages.map((s) => approxTextWidth(s, 11)), 20);
  const left = 56, top = opts.title ? 38 : 14, right = legendW;
  const bottom = 24 + maxTick * Math.SQRT1_2;
  const pw = width - left - right, ph = height - top - bottom;
  const sx = (i: number) => left + (stages.length === 1 ? pw / 2 : (i * pw) / (stages.length - 1));
  const sy = (v: number) => top + ph - ((v - lo) / (hi - lo)) * ph;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
      `viewBox="0 0 ${width} ${height}" font-family="${FONT}">`,
  );
  out.push(`<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`);
  if (opts.title) {
    out.push(
      `<text x="${left + pw / 2}" y="22" font-size="15" font-weight="bold" text-anchor="middle">${
        xmlEscape(opts.title)
      }</text>`,
    );
  }
  for (let k = 0; k <= 5; k++) {
    const v = lo + ((hi - lo) * k) / 5;
    const y = sy(v);
    out.push(`<line x1="${left}" y1="${y}" x2="${left + pw}" y2="${y}" stroke="#e0e0e0"/>`);
    out.push(
      `<text x="${left - 6}" y="${y + 4}" font-size="11" text-anchor="end">${fmt(v, 0)}</text>`,
    );
  }
  out.push(
    `<text x="14" y="${
      top + ph / 2
    }" font-size="12" text-anchor="middle" transform="rotate(-90 14 ${
      top + ph / 2
    })">top-1 accuracy (%)</text>`,
  );
  stages.forEach((s, i) => {
    const x = sx(i), y = top + ph + 14;
    out.push(`<line x1="${x}" y1="${top}" x2="${x}" y2="${top + ph}" stroke="#f0f0f0"/>`);
    out.push(
      `<text x="${x}" y="${y}" font-size="11" text-anchor="end" transform="rotate(-45 ${x} ${y})">${
        xmlEscape(s)
      }</text>`,
    );
  });
  out.push(
    `<rect x="${left}" y="${top}" width="${pw}" height="${ph}" fill="none" stroke="#888888"/>`,
  );
  series.forEach((s, j) => {
    const color = PALETTE[j % PALETTE.length];
    // split the line at missing values
    let seg: string[] = [];
    const flush = () => {
      if (seg.length > 1) {
        out.push(
          `<polyline class="series" fill="none" stroke="${color}" stroke-width="2" points="${
            seg.join(" ")
          }"/>`,
        );
      }
      seg = [];
    };
    s.ys.forEach((v, i) => {
      if (!Number.isFinite(v)) return flush();
      seg.push(`${sx(i).toFixed(1)},${sy(v).toFixed(1)}`);
      const r = i === s.trainedAt ? 5 : 2.5;
      out.push(
        `<circle cx="${sx(i).toFixed(1)}" cy="${sy(v).toFixed(1)}" r="${r}" fill="${color}"/>`,
      );
    });
    flush();
    const ly = top + 8 + j * 16;
    out.push(
      `<line x1="${width - right + 12}" y1="${ly}" x2="${
        width - right + 28
      }" y2="${ly}" stroke="${color}" stroke-width="3"/>`,
    );
    out.push(
      `<text x="${width - right + 32}" y="${ly + 4}" font-size="11">${xmlEscape(s.name)}</text>`,
    );
  });
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}

/** Width and height (px) declared by an SVG's root element. */
export function svgSize(svg: string): { width: number; height: number } {
  const m = /<svg[^>]*\swidth="([\d.]+)"[^>]*\sheight="([\d.]+)"/.exec(svg);
  if (!m) throw new Error("svgSize: no width/height on the <svg> element");
  return { width: Number(m[1]), height: Number(m[2]) };
}

type SharpFn = (input: Uint8Array, opts?: Record<string, unknown>) => {
  png(): { toBuffer(): Promise<Uint8Array> };
  raw(): {
    toBuffer(
      o: { resolveWithObject: true },
    ): Promise<{ data: Uint8Array; info: { channels: number } }>;
  };
  flatten(o: { background: string }): ReturnType<SharpFn>;
};

let fontsChecked: Promise<boolean> | undefined;
let warned = false;

async function loadSharp(): Promise<SharpFn | null> {
  const sharp = await loadSharpModule() as SharpFn | null;
  if (!sharp && !warned) {
    warned = true;
    console.warn("plots: sharp is unavailable here; writing SVG only");
  }
  return sharp;
}

/**
 * Whether librsvg (through sharp) draws text here, i.e. finds a font: renders a probe and looks for
 * dark pixels. Cached.
 */
export function pngTextRenders(): Promise<boolean> {
  fontsChecked ??= (async () => {
    const sharp = await loadSharp();
    if (!sharp) return false;
    const probe =
      `<svg xmlns="http://www.w3.org/2000/svg" width="80" height="30"><rect width="80" height="30" ` +
      `fill="#fff"/><text x="4" y="22" font-size="20" font-family="${FONT}" fill="#000">Hg8</text></svg>`;
    const { data, info } = await sharp(new TextEncoder().encode(probe)).flatten({
      background: "#ffffff",
    }).raw()
      .toBuffer({ resolveWithObject: true });
    let dark = 0;
    for (let i = 0; i < data.length; i += info.channels) if (data[i] < 128) dark++;
    return dark > 20;
  })();
  return fontsChecked;
}

/**
 * Render an SVG to PNG bytes with sharp (1 px per SVG unit). Returns `null` (after one warning)
 * when sharp cannot load; warns once when no font is available (the PNG then lacks its text).
 */
export async function svgToPng(svg: string): Promise<Uint8Array | null> {
  const sharp = await loadSharp();
  if (!sharp) return null;
  if (!(await pngTextRenders()) && !warnedFonts) {
    warnedFonts = true;
    console.warn(
      "plots: librsvg found no font, so PNG plots have no labels; install a font (e.g. " +
        "fonts-dejavu-core) or use the SVG files",
    );
  }
  return new Uint8Array(
    await sharp(new TextEncoder().encode(svg), { density: 72 }).png().toBuffer(),
  );
}
let warnedFonts = false;

/**
 * Write `accuracy_matrix.{svg,png}` and `accuracy_curves.{svg,png}` into `dir` (atomically, temp
 * file + rename); returns the written paths (PNG omitted when sharp is unavailable).
 */
export async function writePlots(
  dir: string,
  m: AccuracyMatrix,
  opts: { title?: string } = {},
): Promise<string[]> {
  await Deno.mkdir(dir, { recursive: true });
  const plots: [string, string][] = [
    [
      "accuracy_matrix",
      heatmapSvg(m, { title: opts.title ? `${opts.title}: accuracy matrix` : undefined }),
    ],
    [
      "accuracy_curves",
      accuracyCurvesSvg(m, {
        title: opts.title ? `${opts.title}: accuracy across tasks` : undefined,
      }),
    ],
  ];
  const written: string[] = [];
  const put = async (path: string, bytes: Uint8Array) => {
    await writeFileAtomic(path, bytes);
    written.push(path);
  };
  for (const [name, svg] of plots) {
    await put(`${dir}/${name}.svg`, new TextEncoder().encode(svg));
    const png = await svgToPng(svg);
    if (png) await put(`${dir}/${name}.png`, png);
  }
  return written;
}

/** Options of {@link barChartSvg}. */
export interface BarChartOptions {
  /** Chart title. */
  title?: string;
  /** Largest value of the axis (default: the largest value, at least 1e-9). */
  max?: number;
  /** Format of the value printed after each bar (default two decimals). */
  format?: (v: number) => string;
  /** Width in pixels (default 420). */
  width?: number;
}

/**
 * A horizontal bar chart as SVG (e.g. the top-5 class probabilities of a zero-shot prediction);
 * bars are drawn in the order given.
 */
export function barChartSvg(
  labels: readonly string[],
  values: readonly number[],
  opts: BarChartOptions = {},
): string {
  if (labels.length !== values.length) {
    throw new Error(`barChartSvg: ${labels.length} labels for ${values.length} values`);
  }
  const width = opts.width ?? 420;
  const fmt = opts.format ?? ((v: number) => v.toFixed(2));
  const max = opts.max ?? Math.max(1e-9, ...values);
  const labelW = Math.min(180, 12 + 7 * Math.max(4, ...labels.map((l) => l.length)));
  const barH = 18, gap = 6, top = opts.title ? 28 : 8;
  const height = top + labels.length * (barH + gap) + 4;
  const barMax = width - labelW - 60;
  const rows = labels.map((l, i) => {
    const y = top + i * (barH + gap);
    const w = Math.max(0, Math.min(1, values[i] / max)) * barMax;
    return `<text x="${labelW - 6}" y="${y + 13}" text-anchor="end">${xmlEscape(l)}</text>` +
      `<rect x="${labelW}" y="${y}" width="${w.toFixed(1)}" height="${barH}" fill="${
        viridis(0.35 + 0.5 * (1 - i / Math.max(1, labels.length)))
      }"/>` +
      `<text x="${(labelW + w + 4).toFixed(1)}" y="${y + 13}">${xmlEscape(fmt(values[i]))}</text>`;
  });
  const title = opts.title
    ? `<text x="${width / 2}" y="18" text-anchor="middle" font-weight="bold">${
      xmlEscape(opts.title)
    }</text>`
    : "";
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
    `viewBox="0 0 ${width} ${height}" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">` +
    `<rect width="100%" height="100%" fill="white"/>${title}${rows.join("")}</svg>`;
}
