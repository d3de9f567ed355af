/**
 * The Kubernetes manifests, parsed back and checked field by field. No cluster is available here:
 * `kubectl apply`, scheduling, eviction/resume and `apply.sh`'s waiting are not exercised; the pod
 * script is run with bash in place of a pod (index from JOB_COMPLETION_INDEX, previous-task guard).
 */
import { parse, parseAllDocuments } from "yaml";
import { assert, assertEquals, assertThrows } from "./_testing.ts";
import { type K8sOptions, planK8s, PREVIOUS_NOT_DONE, writeK8s } from "./k8s.ts";
import { main } from "../tasks/k8s.ts";

const BASE: K8sOptions = {
  grid: {
    methods: ["finetune", "ZSCL"],
    orders: ["Synth-shape,Synth-colour"],
    seeds: [1, 2, 3],
    args: ["--iterations", "10"],
    methodArgs: { ZSCL: ["--image-loss"] },
  },
  image: "registry.example/mtil:0.1",
  volumeClaim: "mtil-runs",
  name: "demo",
  parallelism: 2,
  gpus: 1,
};

// deno-lint-ignore no-explicit-any
type Obj = Record<string, any>;

Deno.test("k8s: one Indexed Job per task position; the YAML parses back to the intended structure", () => {
  const plan = planK8s(BASE);
  assertEquals(plan.runs.length, 6);
  assertEquals(plan.jobs.map((j) => [j.path, j.name]), [
    ["task-01.yaml", "mtil-demo-t01"],
    ["task-02.yaml", "mtil-demo-t02"],
  ]);
  for (const j of plan.jobs) {
    const docs = parseAllDocuments(j.yaml);
    assertEquals(docs.length, 1);
    assertEquals(docs[0].errors, []);
    const m = parse(j.yaml) as Obj;
    assertEquals(m, JSON.parse(JSON.stringify(j.manifest)), "YAML round trip");
    assertEquals([m.apiVersion, m.kind, m.metadata.name], ["batch/v1", "Job", j.name]);
    assertEquals(m.metadata.labels["mtil/position"], String(j.position));
    const s = m.spec;
    assertEquals([s.completionMode, s.completions, s.parallelism], ["Indexed", 6, 2]);
    assertEquals(s.backoffLimitPerIndex, 3);
    assertEquals(s.podFailurePolicy.rules[0], {
      action: "Ignore",
      onPodConditions: [{ type: "DisruptionTarget" }],
    });
    assertEquals(s.podFailurePolicy.rules[1].action, "FailIndex");
    assertEquals(s.podFailurePolicy.rules[1].onExitCodes.values, [PREVIOUS_NOT_DONE]);
    const pod = s.template.spec;
    assertEquals(pod.restartPolicy, "Never"); // required by podFailurePolicy
    assertEquals(pod.terminationGracePeriodSeconds, 120);
    assertEquals(s.template.metadata.labels, m.metadata.labels);
    assertEquals(pod.containers.length, 1);
    const c = pod.containers[0];
    assertEquals([c.name, c.image, c.workingDir], ["run", BASE.image, "/app"]);
    assertEquals(c.command.slice(0, 2), ["bash", "-c"]);
    assertEquals(c.resources.limits["nvidia.com/gpu"], 1);
    assertEquals(c.resources.requests, { cpu: "4", memory: "32Gi" });
    assertEquals(c.volumeMounts, [{ name: "runs", mountPath: "/runs" }]);
    assertEquals(pod.volumes, [{
      name: "runs",
      persistentVolumeClaim: { claimName: "mtil-runs" },
    }]);
    const script: string = c.command[2];
    assert(script.includes("I=${JOB_COMPLETION_INDEX:?"), script);
    assert(script.includes('"${ARGV[@]}" &'), script);
    const task = j.position === 1 ? "Synth-shape" : "Synth-colour";
    assert(
      script.includes(
        `  4) RUN=ZSCL-ordercustom-seed2; TASK=${task}; ARGV=(deno run -A tasks/sequence.ts ` +
          `--order Synth-shape,Synth-colour --method ZSCL --seed 2 ` +
          `--save /runs/demo/order-custom/ZSCL/seed2 --stop-after ${task} --iterations 10 --image-loss) ;;`,
      ),
      script,
    );
    const ck = (t: string) => `/runs/demo/order-custom/ZSCL/seed2/${t}.safetensors`;
    assertEquals(script.includes(`4) PREV=${ck("Synth-shape")} ;;`), j.position === 2);
    assert(script.includes(`4) DONE=${ck(task)} ;;`), script);
  }
  const manifest = JSON.parse(plan.manifest);
  assertEquals(manifest.saveRoot, "/runs/demo");
  assertEquals(manifest.runs[5].saveDir, "/runs/demo/order-custom/ZSCL/seed3");
});

Deno.test("k8s: --gpus 0 has no GPU limit; options are checked", () => {
  const c = planK8s({ ...BASE, gpus: 0, namespace: "ml" }).jobs[0].manifest as Obj;
  assertEquals(c.metadata.namespace, "ml");
  assertEquals(c.spec.template.spec.containers[0].resources.limits, { memory: "32Gi" });
  assertThrows(() => planK8s({ ...BASE, image: "" }), "--image");
  assertThrows(() => planK8s({ ...BASE, volumeClaim: "Bad_Name" }), "--pvc");
  assertThrows(() => planK8s({ ...BASE, name: "UPPER" }), "--name");
  assertThrows(() => planK8s({ ...BASE, saveRoot: "/elsewhere/x" }), "on the volume");
  assertThrows(() => planK8s({ ...BASE, mem: "lots" }), "--mem");
  assertThrows(() => planK8s({ ...BASE, parallelism: 0 }), "--parallelism");
});

Deno.test("k8s: the pod script picks its run from JOB_COMPLETION_INDEX and fails fast when the previous task is missing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "k8s_pod_" });
  try {
    const plan = planK8s({
      ...BASE,
      mountPath: dir,
      command: ["echo", "{run}", "{method}", "{seed}", "{task}", "{save}"],
    });
    const pod = async (position: number, index: number) => {
      const script = (plan.jobs[position - 1].manifest as Obj).spec.template.spec.containers[0]
        .command[2];
      const o = await new Deno.Command("bash", {
        args: ["-c", script],
        env: { JOB_COMPLETION_INDEX: String(index) },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const d = new TextDecoder();
      return { code: o.code, out: d.decode(o.stdout), err: d.decode(o.stderr) };
    };
    const r = await pod(1, 4);
    assertEquals(r.code, 0, r.err);
    assert(
      r.out.endsWith(
        `4 ZSCL 2 Synth-shape ${dir}/demo/order-custom/ZSCL/seed2 --iterations 10 --image-loss\n`,
      ),
      r.out,
    );
    const missing = await pod(2, 4);
    assertEquals(missing.code, PREVIOUS_NOT_DONE, missing.err);
    assert(missing.err.includes("did not finish"), missing.err);
    await Deno.mkdir(`${dir}/demo/order-custom/ZSCL/seed2`, { recursive: true });
    await Deno.writeTextFile(`${dir}/demo/order-custom/ZSCL/seed2/Synth-shape.safetensors`, "");
    const ok = await pod(2, 4);
    assertEquals(ok.code, 0, ok.err);
    assert(ok.out.includes("4 ZSCL 2 Synth-colour"), ok.out);
    assertEquals((await pod(1, 6)).code, 2, "no grid element 6");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("k8s: SIGTERM reaches the run; a run stopped before its checkpoint fails the pod (143) so it is replaced", async () => {
  const dir = await Deno.makeTempDir({ prefix: "k8s_term_" });
  try {
    // a stand-in `deno`: on TERM it "saves state" and exits 0 (as the sequence does); with
    // FINISH set it writes the task's checkpoint and exits 0 at once
    await Deno.mkdir(`${dir}/bin`);
    await Deno.writeTextFile(
      `${dir}/bin/deno`,
      `#!/bin/bash\nsave=""; task=""\nwhile (( $# )); do case "$1" in --save) save=$2;; ` +
        `--stop-after) task=$2;; esac; shift; done\nmkdir -p "$save"\n` +
        `if [ -n "\${FINISH:-}" ]; then : > "$save/$task.safetensors"; exit 0; fi\n` +
        `trap 'echo saved > "$save/state"; exit 0' TERM\necho started > "$save/state"\n` +
        `for i in $(seq 1 200); do sleep 0.05; done\n`,
      { mode: 0o755 },
    );
    const plan = planK8s({ ...BASE, mountPath: dir });
    const script = (plan.jobs[0].manifest as Obj).spec.template.spec.containers[0].command[2];
    const save = plan.runs[1].saveDir;
    const env = { JOB_COMPLETION_INDEX: "1", PATH: `${dir}/bin:${Deno.env.get("PATH")}` };
    const done = await new Deno.Command("bash", {
      args: ["-c", script],
      env: { ...env, FINISH: "1" },
      stderr: "piped",
    }).output();
    assertEquals(done.code, 0, new TextDecoder().decode(done.stderr));
    await Deno.remove(`${save}/Synth-shape.safetensors`);
    const child = new Deno.Command("bash", { args: ["-c", script], env, stderr: "piped" }).spawn();
    for (let i = 0; i < 100; i++) {
      if (
        await Deno.readTextFile(`${save}/state`).then((t) => t.includes("started"), () => false)
      ) {
        break;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    child.kill("SIGTERM");
    const out = await child.output();
    assertEquals(out.code, 143, new TextDecoder().decode(out.stderr));
    assertEquals((await Deno.readTextFile(`${save}/state`)).trim(), "saved");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno task k8s writes the manifests, apply.sh (bash -n, --dry-run) and sweep.json", async () => {
  const dir = await Deno.makeTempDir({ prefix: "k8s_cli_" });
  const log = console.log, err = console.error;
  const printed: string[] = [];
  console.log = (...a: unknown[]) => printed.push(a.join(" "));
  console.error = (...a: unknown[]) => printed.push(a.join(" "));
  try {
    const code = await main([
      ..."--order I --methods finetune,ZSCL --seeds 1,2 --image img:1 --pvc runs".split(" "),
      ..."--gpus 0 --parallelism 3 --name s".split(" "),
      "--out",
      `${dir}/k`,
      "--",
      "--iterations",
      "5",
    ]);
    assertEquals(code, 0, printed.join("\n"));
    const yaml = await Deno.readTextFile(`${dir}/k/task-11.yaml`);
    const m = parse(yaml) as Obj;
    assertEquals([m.metadata.name, m.spec.completions, m.spec.parallelism], ["mtil-s-t11", 4, 3]);
    assertEquals(JSON.parse(await Deno.readTextFile(`${dir}/k/sweep.json`)).runs.length, 4);
    const n = await new Deno.Command("bash", { args: ["-n", `${dir}/k/apply.sh`] }).output();
    assertEquals(n.code, 0);
    const dry = await new Deno.Command("bash", {
      args: [`${dir}/k/apply.sh`, "--dry-run", "--from", "10"],
      stdout: "piped",
    }).output();
    assertEquals(new TextDecoder().decode(dry.stdout).trim().split("\n"), [
      "kubectl delete job mtil-s-t10 --ignore-not-found",
      "kubectl apply -f task-10.yaml",
      "kubectl delete job mtil-s-t11 --ignore-not-found",
      "kubectl apply -f task-11.yaml",
    ]);
    const bad = await new Deno.Command("bash", {
      args: [`${dir}/k/apply.sh`, "--from", "12"],
      stderr: "piped",
    }).output();
    assertEquals(bad.code, 2);
    printed.length = 0;
    assertEquals(await main(["--order", "I", "--method", "x", "--image", "i"]), 2);
    assert(printed.join("\n").includes("--pvc"));
    printed.length = 0;
    assertEquals(
      await main([..."--order I --method x --image i --pvc p --dry-run".split(" ")]),
      0,
    );
    assert(printed.join("\n").includes("completionMode: Indexed"), printed.join("\n"));
    await writeK8s({ ...BASE, outDir: `${dir}/lib` });
    assert(await Deno.stat(`${dir}/lib/apply.sh`).then((s) => s.isFile));
  } finally {
    console.log = log;
    console.error = err;
    await Deno.remove(dir, { recursive: true });
  }
});
