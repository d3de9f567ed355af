import { assert, assertEquals } from "../methods/_testing.ts";
import { publishedMatrices } from "../methods/protocol.ts";
import { findMatrices, formatTable, main, summarizeFiles } from "./summarize.ts";

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

Deno.test("summarize: recomputes published scores from saved matrices and compares", async () => {
  const dir = await Deno.makeTempDir({ prefix: "summarize_" });
  try {
    const pubs = publishedMatrices().filter((p) =>
      p.order === "I" && ["ZSCL", "Continual-FT"].includes(p.method)
    );
    for (const p of pubs) {
      await Deno.mkdir(`${dir}/sweep/${p.method}/seed1`, { recursive: true });
      await Deno.writeTextFile(
        `${dir}/sweep/${p.method}/seed1/accuracy_matrix.json`,
        JSON.stringify({ ...p.matrix, zeroShot: p.matrix.datasets.map(() => 50) }),
      );
    }
    // a sequence still running: 2 of 3 tasks done, the rest null (JSON's NaN)
    await Deno.mkdir(`${dir}/running`);
    await Deno.writeTextFile(
      `${dir}/running/accuracy_matrix.json`,
      JSON.stringify({
        tasks: ["A", "B", "C"],
        datasets: ["A", "B", "C"],
        values: [[80, 10, 20], [60, 90, 30], [null, null, null]],
        completed: 2,
      }),
    );
    await Deno.mkdir(`${dir}/fresh`);
    await Deno.writeTextFile(
      `${dir}/fresh/accuracy_matrix.json`,
      JSON.stringify({ tasks: ["A"], datasets: ["A"], values: [[null]], completed: 0 }),
    );
    const running = await capture(() => main([`${dir}/running`, `${dir}/fresh`]));
    assertEquals(running.code, 0, running.out);
    assert(
      running.out.includes("(2/3 tasks)") && running.out.includes("no task finished yet"),
      running.out,
    );
    assert(/\s10\.0\s+60\.0\s+75\.0\s+-20\.0\s+20\.0$/m.test(running.out), running.out);
    await Deno.remove(`${dir}/running`, { recursive: true });
    await Deno.remove(`${dir}/fresh`, { recursive: true });
    const files = await findMatrices(dir);
    assertEquals(files.length, 2);
    const rows = await summarizeFiles(files);
    const ft = rows.find((r) => r.name.endsWith("Continual-FT/seed1"))!;
    assertEquals([ft.transfer, ft.avg, ft.last, ft.order, ft.tasks], [44.6, 55.9, 77.3, "I", 11]);
    const z = rows.find((r) => r.name.endsWith("ZSCL/seed1"))!;
    assertEquals([z.transfer, z.avg, z.last], [68.1, 75.4, 83.6]);
    assert(z.bwt < 0 && z.forgetting > 0, "ZSCL still forgets a little");
    assertEquals(rows.filter((r) => r.name.endsWith("(zero-shot)")).map((r) => r.avg), [50, 50]);

    const { code, out } = await capture(() => main([`${dir}/sweep`, "--published"]));
    assertEquals(code, 0, out);
    assert(out.includes("published: ZSCL*") && out.includes("published: Zero-shot"), out);
    const line = out.split("\n").find((l) =>
      l.includes("Continual-FT/seed1") && !l.includes("zero-shot")
    )!;
    assert(/\s44\.6\s+55\.9\s+77\.3\s/.test(line), line);

    const j = await capture(() => main([files[0], "--json"]));
    assertEquals(JSON.parse(j.out).length, 2);
    assertEquals((await capture(() => main([`${dir}/nothing`]))).code, 1);
    assertEquals((await capture(() => main([]))).code, 2);
    await Deno.writeTextFile(`${dir}/bad.json`, "{");
    const bad = await capture(() => main([`${dir}/bad.json`]));
    assertEquals(bad.code, 1);
    assert(bad.out.includes("bad.json"), bad.out);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("formatTable aligns columns and prints – for unknown values", () => {
  const t = formatTable([
    { name: "a", order: "I", tasks: 3, transfer: 1, avg: 2, last: 3, bwt: NaN, forgetting: 0.5 },
  ]);
  const [head, rule, row] = t.split("\n");
  assertEquals(head.length, rule.length);
  assert(row.includes("1.0") && row.includes("–") && row.endsWith("0.5"));
});
