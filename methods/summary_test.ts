import { assert, assertEquals } from "./_testing.ts";
import { parseCsvRecords } from "../datasets/csv.ts";
import { publishedMatrices } from "./protocol.ts";
import { expandGrid, sweepManifest } from "./sweep.ts";
import {
  errorBarsSvg,
  formatSweepTable,
  meanStd,
  publishedName,
  summarizeSweep,
  writeSweepSummary,
} from "./summary.ts";
import { main } from "../tasks/summarize.ts";

async function capture(fn: () => Promise<number>): Promise<{ code: number; out: string }> {
  const log = console.log, err = console.error;
  const lines: string[] = [];
  console.log = (...a: unknown[]) => lines.push(a.join(" "));
  console.error = (...a: unknown[]) => lines.push(a.join(" "));
  try {
    return { code: await fn(), out: lines.join("\n") };
  } finally {
    console.log = log;
    console.error = err;
  }
}

Deno.test("meanStd: sample standard deviation; one value has no std; non-finite values ignored", () => {
  assertEquals(meanStd([1, 2, 3]), { mean: 2, std: 1, n: 3 });
  const one = meanStd([5]);
  assert(one.mean === 5 && Number.isNaN(one.std) && one.n === 1);
  assertEquals(meanStd([2, NaN, 4]).n, 2);
  assert(Number.isNaN(meanStd([]).mean));
  assertEquals(publishedName("finetune"), "Continual-FT");
  assertEquals(publishedName("ZSCL"), "ZSCL");
  assertEquals(publishedName("icarl"), "iCaRL");
  assertEquals(publishedName("mine"), undefined);
});

/**
 * A sweep folder: finetune and ZSCL on order I, seeds 1–3, each run's matrix the published one
 * shifted by (seed − 2) points, so Transfer / Avg / Last average to the published scores with a
 * standard deviation of exactly 1 and BWT does not vary. ZSCL seed 3 stopped after 5 tasks.
 */
async function fakeSweep(dir: string, withManifest: boolean) {
  const grid = { methods: ["finetune", "ZSCL"], orders: ["I"], seeds: [1, 2, 3] };
  const runs = expandGrid(grid, dir);
  const pub = Object.fromEntries(
    publishedMatrices().filter((p) => p.order === "I").map((p) => [p.method, p.matrix]),
  );
  for (const r of runs) {
    const m = pub[r.method === "finetune" ? "Continual-FT" : "ZSCL"];
    const shift = r.seed - 2;
    const partial = r.method === "ZSCL" && r.seed === 3;
    await Deno.mkdir(r.saveDir, { recursive: true });
    await Deno.writeTextFile(
      `${r.saveDir}/accuracy_matrix.json`,
      JSON.stringify({
        ...m,
        values: m.values.map((row, t) => row.map((v) => (partial && t >= 5 ? null : v + shift))),
        completed: partial ? 5 : 11,
      }),
    );
    await Deno.writeTextFile(
      `${r.saveDir}/manifest.json`,
      JSON.stringify({ config: { method: r.method, seed: String(r.seed), iterations: "1000" } }),
    );
  }
  if (withManifest) {
    // plus a run of the grid that never started
    const extra = expandGrid({ ...grid, seeds: [1, 2, 3, 4] }, dir);
    await Deno.writeTextFile(
      `${dir}/sweep.json`,
      JSON.stringify(sweepManifest({ ...grid, seeds: [1, 2, 3, 4] }, extra, dir)),
    );
  }
}

Deno.test("summarizeSweep: mean ± std over seeds, published beside, unfinished runs listed not averaged", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sweep_summary_" });
  try {
    await fakeSweep(dir, true);
    const s = await summarizeSweep(dir);
    assertEquals(s.runs.length, 8);
    assertEquals(
      s.incomplete.map((r) => [r.method, r.seed, r.completed, r.tasks]),
      [["finetune", 4, 0, 11], ["ZSCL", 3, 5, 11], ["ZSCL", 4, 0, 11]],
    );
    const [ft, z] = s.groups;
    assertEquals([ft.label, ft.seeds, z.label, z.seeds], [
      "finetune order I",
      [1, 2, 3],
      "ZSCL order I",
      [1, 2],
    ]);
    const close = (a: number, b: number) => Math.abs(a - b) < 0.051;
    assert(close(ft.transfer.mean, 44.6) && close(ft.avg.mean, 55.9) && close(ft.last.mean, 77.3));
    for (const k of ["transfer", "avg", "last"] as const) {
      assert(Math.abs(ft[k].std - 1) < 1e-9, `${k} std ${ft[k].std}`);
      assert(Math.abs(z[k].std - Math.SQRT1_2) < 1e-9, `${k} std ${z[k].std}`);
    }
    assert(ft.bwt.std < 1e-9 && ft.bwt.mean < 0);
    // ZSCL averages seeds 1 and 2 only: published − 0.5
    assert(close(z.avg.mean, 75.4 - 0.5), String(z.avg.mean));
    assertEquals(ft.published, { method: "Continual-FT", transfer: 44.6, avg: 55.9, last: 77.3 });
    assertEquals(z.published?.method, "ZSCL");

    const text = formatSweepTable(s);
    const ftLine = text.split("\n").find((l) => l.startsWith("finetune"))!;
    assert(/44\.6 ± 1\.0\s+55\.9 ± 1\.0\s+77\.3 ± 1\.0/.test(ftLine), ftLine);
    assert(ftLine.includes("44.6 / 55.9 / 77.3 (Continual-FT)"), ftLine);
    assert(/^ZSCL\s+I\s+–\s+2\s/m.test(text), text);
    assert(text.includes("incomplete (not averaged): 3") && text.includes("5/11 tasks"), text);

    const files = await writeSweepSummary(s, `${dir}/out`);
    const csv = parseCsvRecords(await Deno.readTextFile(`${dir}/out/summary.csv`));
    assertEquals(csv.map((r) => [r.method, r.order, r.n, r.seeds]), [
      ["finetune", "I", "3", "1 2 3"],
      ["ZSCL", "I", "2", "1 2"],
    ]);
    assertEquals(Number(csv[0].avg_std), 1);
    assertEquals(csv[0].published_avg, "55.9");
    const json = JSON.parse(await Deno.readTextFile(`${dir}/out/summary.json`));
    assertEquals(json.groups.length, 2);
    assertEquals(json.incomplete.length, 3);
    const svg = await Deno.readTextFile(`${dir}/out/summary.svg`);
    assertEquals(svg.match(/class="bar"/g)?.length, 6);
    assertEquals(svg.match(/class="errorbar"/g)?.length, 6);
    assertEquals(svg.match(/class="published"/g)?.length, 6);
    assert(files.includes(`${dir}/out/summary.svg`));
    if (files.includes(`${dir}/out/summary.png`)) {
      const png = await Deno.readFile(`${dir}/out/summary.png`);
      assertEquals([...png.slice(1, 4)], [0x50, 0x4e, 0x47]); // "PNG"
    } else console.warn("summary.png not written (sharp unavailable): SVG only");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("summarizeSweep without sweep.json groups runs by their manifest config without the seed", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sweep_nomanifest_" });
  try {
    await fakeSweep(dir, false);
    const s = await summarizeSweep(dir);
    assertEquals(s.runs.length, 6);
    assertEquals(s.incomplete.length, 1);
    // folders in sorted order: "ZSCL" before "finetune"
    assertEquals(s.groups.map((g) => [g.method, g.order, g.seeds.sort()]), [
      ["ZSCL", "I", [1, 2]],
      ["finetune", "I", [1, 2, 3]],
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno task summarize on a sweep folder prints mean ± std and writes CSV/JSON/plot", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sweep_cli_" });
  try {
    await fakeSweep(dir, true);
    const { code, out } = await capture(() => main([dir, "--out", `${dir}/summary`]));
    assertEquals(code, 0, out);
    assert(out.includes("mean ± sample std over seeds") && out.includes("± 1.0"), out);
    assert(out.includes(`${dir}/summary/summary.csv`), out);
    const j = await capture(() => main([dir, "--json", "--out", `${dir}/summary`]));
    assertEquals(JSON.parse(j.out).groups[0].seeds, [1, 2, 3]);
    // --sweep on a folder without sweep.json; more than one folder is refused
    await Deno.remove(`${dir}/sweep.json`);
    const forced = await capture(() => main([dir, "--sweep", "--out", `${dir}/s2`]));
    assertEquals(forced.code, 0, forced.out);
    assert(forced.out.includes("finetune"), forced.out);
    assertEquals((await capture(() => main([dir, dir, "--sweep"]))).code, 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("errorBarsSvg: no error bar for a single seed; values clamp into the range", () => {
  const g = {
    label: "x",
    method: "x",
    order: "custom",
    seeds: [1],
    transfer: meanStd([120]),
    avg: meanStd([50]),
    last: meanStd([-5]),
    bwt: meanStd([0]),
    forgetting: meanStd([0]),
  };
  const svg = errorBarsSvg({ root: "/r", groups: [g], runs: [], incomplete: [] }, { title: "t" });
  assertEquals(svg.match(/class="bar"/g)?.length, 3);
  assertEquals(svg.match(/class="errorbar"/g), null);
  assert(!/NaN/.test(svg), svg);
});
