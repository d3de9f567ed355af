import { deepStrictEqual as assertEquals, ok as assert, throws } from "node:assert/strict";
import {
  isSynthDomainTaskName,
  SYNTH_DOMAIN_TASK_NAMES,
  SYNTH_DOMAIN_TASKS,
  SYNTH_EXTRA_WORDS,
  synthDomainTask,
} from "./synth_domains.ts";
import { synthCaptions } from "./synth.ts";
import { rgbToHsv, shapeDistance } from "./synth_render.ts";
import { loadDataset } from "./registry.ts";
import { words } from "../clip/tokenizers/word_tokenizer.ts";
import { synthVocabulary } from "../methods/pretrain.ts";
import type { DecodedImage } from "./types.ts";

Deno.test("domain tasks: deterministic, balanced labels, disjoint splits", async () => {
  for (const name of SYNTH_DOMAIN_TASK_NAMES) {
    const a = synthDomainTask(name, { split: "train", n: 40 });
    const b = synthDomainTask(name, { split: "train", n: 40 });
    const t = synthDomainTask(name, { split: "test", n: 40 });
    const k = a.classnames.length;
    for (let i = 0; i < 2 * k; i++) {
      const ea = await a.get(i);
      assertEquals(ea.label, i % k);
      assertEquals(ea.image, b.render(i));
      const mine = a.render(i).data, other = t.render(i).data;
      assert(mine.some((v, j) => v !== other[j]), `${name} ${i}: the splits differ`);
    }
    assertEquals(a.templates, [...SYNTH_DOMAIN_TASKS[name].templates]);
  }
});

Deno.test("domain tasks: held-out class names never occur in pretraining captions", () => {
  const caps = synthCaptions({ n: 3000, seed: 5 });
  const seen = new Set<string>();
  for (let i = 0; i < caps.length; i++) for (const w of words(caps.caption(i))) seen.add(w);
  const vocab = new Set(synthVocabulary(500));
  for (const spec of Object.values(SYNTH_DOMAIN_TASKS)) {
    for (const c of spec.classes) {
      for (const w of words(c)) assert(vocab.has(w), `${w} is in the model's vocabulary`);
      const held = spec.heldOut.includes(c);
      assertEquals(words(c).every((w) => seen.has(w)), !held, `${spec.name}: ${c}`);
    }
  }
  for (const w of SYNTH_EXTRA_WORDS) assert(vocab.has(w), w);
});

function stats(img: DecodedImage): { mean: number; sat: number; rough: number } {
  let mean = 0, sat = 0, rough = 0;
  const n = img.width * img.height;
  for (let p = 0; p < n; p++) {
    const [, s, v] = rgbToHsv(img.data[3 * p], img.data[3 * p + 1], img.data[3 * p + 2]);
    mean += v;
    sat += s;
    if (p % img.width > 0) rough += Math.abs(img.data[3 * p] - img.data[3 * p - 3]) / 255;
  }
  return { mean: mean / n, sat: sat / n, rough: rough / n };
}

Deno.test("domain tasks: each task has its own image statistics (visual domain)", () => {
  const avg: Record<string, { mean: number; sat: number; rough: number }> = {};
  for (const name of SYNTH_DOMAIN_TASK_NAMES) {
    const ds = synthDomainTask(name, { split: "test", n: 60 });
    const s = { mean: 0, sat: 0, rough: 0 };
    for (let i = 0; i < ds.length; i++) {
      const t = stats(ds.render(i));
      s.mean += t.mean / ds.length;
      s.sat += t.sat / ds.length;
      s.rough += t.rough / ds.length;
    }
    avg[name] = s;
  }
  assert(avg["Synth-hues"].mean < 0.25, `night is dark: ${avg["Synth-hues"].mean}`);
  assert(avg["Synth-glyphs"].mean > 0.75, `paper is bright: ${avg["Synth-glyphs"].mean}`);
  assert(avg["Synth-fabrics"].sat > 0.2, `tinted is coloured: ${avg["Synth-fabrics"].sat}`);
  assert(avg["Synth-sizes"].rough > 0.1, `noise is rough: ${avg["Synth-sizes"].rough}`);
  assert(avg["Synth-sizes"].sat < 0.15, `noise is grey: ${avg["Synth-sizes"].sat}`);
  assert(
    avg["Synth-layout"].rough < avg["Synth-sizes"].rough / 2,
    `blur is smooth: ${JSON.stringify(avg)}`,
  );
});

Deno.test("new shapes fit in their box and are filled at the centre", () => {
  for (const kind of ["heart", "moon", "arrow", "diamond"] as const) {
    const r = 10;
    let inside = 0;
    for (let y = -15; y <= 15; y += 0.5) {
      for (let x = -15; x <= 15; x += 0.5) {
        if (shapeDistance(kind, x, y, r) < 0) {
          inside++;
          assert(Math.abs(x) <= 1.02 * r && Math.abs(y) <= 1.02 * r, `${kind} at ${x},${y}`);
        }
      }
    }
    assert(inside > 0.2 * (2 * r * 2) ** 2 / 0.25 / 4, `${kind} has area (${inside})`);
  }
});

Deno.test("registry resolves the domain tasks; bad names and options fail", async () => {
  for (const name of SYNTH_DOMAIN_TASK_NAMES) {
    assert(isSynthDomainTaskName(name));
    const ds = await loadDataset(name, { split: "test" });
    assertEquals(ds.name, name);
    assertEquals(ds.length, 2000);
  }
  assert(!isSynthDomainTaskName("Synth-nothing"));
  throws(() => synthDomainTask("Synth-nothing" as "Synth-hues"), /unknown task/);
  throws(() => synthDomainTask("Synth-hues", { size: 8 }), /image size/);
  throws(() => synthDomainTask("Synth-hues", { n: -1 }), /non-negative/);
});
