import { assert, assertEquals } from "../methods/_testing.ts";
import { main } from "./slurm.ts";

Deno.test("deno task slurm: writes chains for a methods × seeds sweep with pass-through flags", async () => {
  const dir = await Deno.makeTempDir({ prefix: "slurm_cli_" });
  const log = console.log, err = console.error;
  const printed: string[] = [];
  console.log = (...a: unknown[]) => printed.push(a.join(" "));
  console.error = (...a: unknown[]) => printed.push(a.join(" "));
  try {
    const code = await main([
      "--order",
      "I",
      "--method",
      "ZSCL",
      "--methods",
      "finetune,ZSCL",
      "--seeds",
      "1,2",
      "--partition",
      "gpu",
      "--time",
      "1-00:00:00",
      "--gpus",
      "2",
      "--out",
      `${dir}/s`,
      "--save-root",
      `${dir}/runs`,
      "--",
      "--iterations",
      "500",
      "--lr",
      "1e-5",
    ]);
    assertEquals(code, 0, printed.join("\n"));
    const manifest = JSON.parse(await Deno.readTextFile(`${dir}/s/chains.json`));
    assertEquals(manifest.chains.map((c: { name: string }) => c.name), [
      "ZSCL-orderI-seed1",
      "ZSCL-orderI-seed2",
      "finetune-orderI-seed1",
      "finetune-orderI-seed2",
    ]);
    const s = await Deno.readTextFile(`${dir}/s/finetune-orderI-seed2/11-SUN397.sbatch`);
    assert(s.includes("#SBATCH --gres=gpu:2") && s.includes("#SBATCH --time=1-00:00:00"));
    assert(
      s.includes(
        `--save ${dir}/runs/order-I/finetune/seed2 --stop-after SUN397 --iterations 500 --lr 1e-5 &`,
      ),
      s,
    );
    assert(printed.join("\n").includes(`bash ${dir}/s/submit.sh`));
    assertEquals(await main(["--order", "I", "--method", "x", "--partition", "p"]), 2);
    assertEquals(
      await main(["--order", "I", "--method", "x", "--partition", "p", "--time", "soon"]),
      2,
    );
    assertEquals(await main(["--nope"]), 2);
  } finally {
    console.log = log;
    console.error = err;
    await Deno.remove(dir, { recursive: true });
  }
});
