import { assert, assertEquals } from "./_testing.ts";
import {
  accuracyCurvesSvg,
  heatmapSvg,
  pngTextRenders,
  svgSize,
  svgToPng,
  viridis,
  writePlots,
  xmlEscape,
} from "./plots.ts";
import type { AccuracyMatrix } from "./metrics.ts";

/** Minimal XML well-formedness check: balanced tags, quoted attributes, escaped text. */
function parseXml(src: string): { tags: Map<string, number>; root: string } {
  const stack: string[] = [];
  const tags = new Map<string, number>();
  let root = "";
  let i = 0;
  while (i < src.length) {
    const lt = src.indexOf("<", i);
    const text = src.slice(i, lt < 0 ? src.length : lt);
    if (/&(?!(amp|lt|gt|quot|#\d+);)/.test(text)) throw new Error(`unescaped & in text: ${text}`);
    if (text.includes(">")) throw new Error(`stray > in text: ${text}`);
    if (text.trim() && stack.length === 0) throw new Error(`text outside the root: ${text}`);
    if (lt < 0) break;
    const gt = src.indexOf(">", lt);
    if (gt < 0) throw new Error(`unterminated tag at ${lt}`);
    const tag = src.slice(lt + 1, gt);
    i = gt + 1;
    if (tag.startsWith("/")) {
      const name = tag.slice(1).trim();
      const open = stack.pop();
      if (open !== name) throw new Error(`</${name}> closes <${open}>`);
      continue;
    }
    const m = /^([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)$/.exec(tag);
    if (!m) throw new Error(`malformed tag <${tag}>`);
    const name = m[1];
    if (!root) root = name;
    else if (stack.length === 0) throw new Error("two root elements");
    tags.set(name, (tags.get(name) ?? 0) + 1);
    if (!m[3]) stack.push(name);
  }
  if (stack.length) throw new Error(`unclosed <${stack.join("><")}>`);
  return { tags, root };
}

const M: AccuracyMatrix = {
  tasks: ["MNIST", "EuroSAT", "DTD"],
  datasets: ["MNIST", "EuroSAT", "DTD", "Pets & <Cats>"],
  values: [
    [99.1, 40.2, 30.3, 70.4],
    [80.5, 97.6, 31.7, 65.8],
    [75.9, 90.1, 72.25, NaN],
  ],
  zeroShot: [59.4, 54.9, 44.6, 89],
};

Deno.test("xmlEscape and viridis", () => {
  assertEquals(xmlEscape(`a<b>&"c'`), "a&lt;b&gt;&amp;&quot;c&#39;");
  assertEquals(viridis(0), "#440154");
  assertEquals(viridis(1), "#fde725");
  assertEquals(viridis(NaN), "#dddddd");
  assertEquals(viridis(2), "#fde725");
});

Deno.test("heatmap SVG: well-formed, one cell and one value per entry, values printed", () => {
  const svg = heatmapSvg(M, { title: "finetune on A & B" });
  const { tags, root } = parseXml(svg);
  assertEquals(root, "svg");
  assertEquals((svg.match(/class="cell"/g) ?? []).length, 4 * 4);
  assertEquals((svg.match(/class="value"/g) ?? []).length, 4 * 4);
  for (const v of ["99.1", "97.6", "72.3", "59.4", "89.0", "–"]) {
    assert(svg.includes(`>${v}</text>`), v);
  }
  assert(svg.includes("Pets &amp; &lt;Cats&gt;"));
  assert(svg.includes(">after EuroSAT</text>") && svg.includes(">zero-shot</text>"));
  // the trained cells (diagonal) are outlined
  assertEquals((svg.match(/class="trained"/g) ?? []).length, 3);
  assert(tags.get("text")! > 16);
});

Deno.test("curves SVG: well-formed, one line per dataset, gap at missing values", () => {
  const svg = accuracyCurvesSvg(M, { title: "curves" });
  parseXml(svg);
  // MNIST, EuroSAT, DTD full lines; the 4th has a NaN at the end: still one segment of 3 points
  assertEquals((svg.match(/class="series"/g) ?? []).length, 4);
  assertEquals(svgSize(svg), { width: 820, height: 440 });
  const noZs = accuracyCurvesSvg({
    ...M,
    zeroShot: undefined,
    values: M.values.map((r) => [r[0], NaN, r[2], r[3]]),
  });
  parseXml(noZs);
  // EuroSAT has only NaNs -> no polyline; the 4th column has 2 points
  assertEquals((noZs.match(/class="series"/g) ?? []).length, 3);
});

Deno.test("PNG via sharp has the SVG's dimensions; text renders when fonts exist", async () => {
  const svg = heatmapSvg(M);
  const { width, height } = svgSize(svg);
  const png = await svgToPng(svg);
  if (!png) {
    console.warn("sharp unavailable here: PNG not checked");
    return;
  }
  assertEquals(Array.from(png.subarray(0, 8)), [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const dv = new DataView(png.buffer, png.byteOffset);
  assertEquals([dv.getUint32(16), dv.getUint32(20)], [width, height], "IHDR size");
  console.log(`fonts for PNG text: ${await pngTextRenders()}`);
  const dir = await Deno.makeTempDir({ prefix: "plots_" });
  try {
    const files = await writePlots(dir, M, { title: "demo" });
    assertEquals(files.map((f) => f.slice(dir.length + 1)).sort(), [
      "accuracy_curves.png",
      "accuracy_curves.svg",
      "accuracy_matrix.png",
      "accuracy_matrix.svg",
    ]);
    parseXml(await Deno.readTextFile(`${dir}/accuracy_matrix.svg`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("barChartSvg: one bar per label, widths proportional, labels escaped", async () => {
  const { barChartSvg } = await import("./plots.ts");
  const svg = barChartSvg(["a<b", "c"], [1, 0.5], { max: 1, width: 300 });
  const widths = [...svg.matchAll(/<rect x="\d+" y="\d+" width="([\d.]+)"/g)].map((m) =>
    Number(m[1])
  );
  if (widths.length !== 2) throw new Error(`expected 2 bars, got ${widths.length}`);
  if (Math.abs(widths[0] - 2 * widths[1]) > 0.2) throw new Error(`widths ${widths}`);
  if (!svg.includes("a&lt;b")) throw new Error("label not escaped");
});
