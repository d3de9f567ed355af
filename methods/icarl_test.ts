import { assertEquals } from "./_testing.ts";
import { ExemplarMemory, herdingSelect, perClassBudget } from "./icarl.ts";

Deno.test("herdingSelect: hand-worked example", () => {
  // unit vectors: a=(1,0), b=(0,1), c=(0.6,0.8), d=(1,0); mean μ = (0.65, 0.45)
  const f = new Float32Array([1, 0, 0, 1, 0.6, 0.8, 1, 0]);
  // k=1: |μ−a|² = .1225+.2025 = .325, |μ−b|² = .4225+.3025 = .725,
  //      c .0025+.1225 = .125 → c. k=2: (c+x)/2: a→(.8,.4): .0225+.0025 = .025; b→(.3,.9): .325 → a
  // k=3: (c+a+x)/3 with x=b → (.533,.6): .0136+.0225 = .036; x=d → (.867,.267): .047+.034 → b
  assertEquals(herdingSelect(f, 4, 2, 3), [2, 0, 1]);
  assertEquals(herdingSelect(f, 4, 2, 10).length, 4);
  // features are normalised first: scaling a row changes nothing
  const g = new Float32Array([5, 0, 0, 3, 0.3, 0.4, 2, 0]);
  assertEquals(herdingSelect(g, 4, 2, 3), [2, 0, 1]);
});

Deno.test("ExemplarMemory keeps floor(K/t) per task with original indices", () => {
  assertEquals(perClassBudget(7, 3), [3, 2, 2]);
  const mem = new ExemplarMemory(6);
  const feats = new Float32Array([1, 0, 0, 1, 0.6, 0.8, 1, 0, 0.8, 0.6, 0, 1]);
  mem.addTask("A", [10, 11, 12, 13, 14, 15], [0, 0, 0, 0, 1, 1], feats, 2);
  // K/1 = 6 → class 0 gets 3 (herding order 12,10,11), class 1 gets 3 (only 2 exist)
  assertEquals(mem.exemplars().map((e) => e.index), [12, 10, 11, 14, 15]);
  mem.addTask("B", [0, 1, 2], [0, 0, 0], new Float32Array([1, 0, 0, 1, 1, 1]), 2);
  // K/2 = 3 per task: A → class 0: 2, class 1: 1 (herding prefixes); B → 3
  const ex = mem.exemplars();
  assertEquals(ex.filter((e) => e.task === "A").map((e) => e.index), [12, 10, 14]);
  assertEquals(ex.filter((e) => e.task === "B").length, 3);
  const back = ExemplarMemory.fromJSON(JSON.parse(JSON.stringify(mem.toJSON())));
  assertEquals(back.exemplars(), ex);
});
