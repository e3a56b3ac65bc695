// fake: e2b
// npm: e2b@2.51.0
// spec/fakes/check/e2b.mjs: the official E2B SDK (the version e2b.md was checked against)
// against spec/fakes/e2b.lua: create -> commands -> files -> list -> timeout -> connect ->
// snapshot (list, create from it, delete) -> kill.
// Run by spec/fakes/check/run.lua as `node e2b.mjs URL API_KEY`; the fake's envd address
// comes from GET URL/_fake/config. Exits non-zero on the first failure; run.lua also fails
// when the fake refused any request the SDK made.
import { Sandbox, CommandExitError } from "e2b";

const [url, apiKey] = process.argv.slice(2);
if (!url || !apiKey) throw new Error("usage: node e2b.mjs URL API_KEY");
const cfg = await (await fetch(url + "/_fake/config")).json();
const opts = { apiKey, apiUrl: url, sandboxUrl: cfg.sandbox_url, requestTimeoutMs: 30000 };

function check(cond, what, got) {
  if (!cond) throw new Error(`${what}: got ${JSON.stringify(got)}`);
}

const tag = `sdk-${process.pid}`;
const sbx = await Sandbox.create("base", { ...opts, metadata: { check: tag },
                                           envs: { SDK_A: "from create" }, timeoutMs: 120000 });
try {
  check(typeof sbx.sandboxId === "string" && sbx.sandboxId.length > 0, "sandboxId", sbx.sandboxId);
  check(await sbx.isRunning(), "isRunning", false);

  // commands: output, env, cwd, exit codes
  let r = await sbx.commands.run('echo "out $SDK_A $SDK_B"; echo err >&2; pwd',
                                 { envs: { SDK_B: "b" }, cwd: "/tmp" });
  check(r.exitCode === 0, "exit code", r.exitCode);
  check(r.stdout === "out from create b\n/tmp\n", "stdout", r.stdout);
  check(r.stderr === "err\n", "stderr", r.stderr);
  let threw = null;
  try { await sbx.commands.run("echo before; exit 3"); } catch (e) { threw = e; }
  check(threw instanceof CommandExitError && threw.exitCode === 3, "exit 3", String(threw));
  const chunks = [];
  r = await sbx.commands.run("for i in 1 2 3; do echo $i; done",
                             { onStdout: (d) => chunks.push(d) });
  check(chunks.join("") === "1\n2\n3\n", "onStdout", chunks);

  // a background command fed through stdin, then killed
  const bg = await sbx.commands.run("cat", { background: true, stdin: true });
  check(typeof bg.pid === "number", "background pid", bg.pid);
  await sbx.commands.sendStdin(bg.pid, "piped\n");
  const procs = await sbx.commands.list();
  check(procs.some((p) => p.pid === bg.pid), "commands.list", procs);
  check(await bg.kill(), "kill", false);

  // files: text, bytes, several at once, list, mkdir, exists, remove
  await sbx.files.write("/home/user/sdk/a.txt", "hello");
  check(await sbx.files.read("/home/user/sdk/a.txt") === "hello", "read text", null);
  const bytes = new Uint8Array(256 * 4).map((_, i) => i % 256);
  await sbx.files.write("sdk/bytes.bin", bytes.buffer);
  const back = await sbx.files.read("sdk/bytes.bin", { format: "bytes" });
  check(back.length === bytes.length && back.every((b, i) => b === bytes[i]), "read bytes",
        back.length);
  await sbx.files.write([{ path: "/home/user/sdk/b.txt", data: "B" },
                         { path: "/home/user/sdk/c/d.txt", data: "D" }]);
  check(await sbx.files.read("/home/user/sdk/c/d.txt") === "D", "multi write", null);
  const names = (await sbx.files.list("/home/user/sdk")).map((e) => e.name).sort();
  check(JSON.stringify(names) === JSON.stringify(["a.txt", "b.txt", "bytes.bin", "c"]),
        "list", names);
  check(await sbx.files.makeDir("/home/user/sdk/e") === true, "makeDir", null);
  check(await sbx.files.exists("/home/user/sdk/e"), "exists", false);
  await sbx.files.remove("/home/user/sdk/e");
  check(!(await sbx.files.exists("/home/user/sdk/e")), "removed", true);
  r = await sbx.commands.run("cat /home/user/sdk/a.txt /home/user/sdk/b.txt");
  check(r.stdout === "helloB", "files seen by commands", r.stdout);

  // lifecycle: list by metadata, timeout, info, connect
  const found = await Sandbox.list({ ...opts, query: { metadata: { check: tag } } }).nextItems();
  check(found.length === 1 && found[0].sandboxId === sbx.sandboxId, "list", found);
  await sbx.setTimeout(60000);
  const info = await sbx.getInfo();
  check(info.sandboxId === sbx.sandboxId && info.metadata.check === tag, "getInfo", info);
  const again = await Sandbox.connect(sbx.sandboxId, opts);
  r = await again.commands.run("echo again");
  check(r.stdout === "again\n", "connect", r.stdout);

  // snapshots: take one, list it by sandbox, start a sandbox from it, delete it
  const snap = await sbx.createSnapshot();
  check(typeof snap.snapshotId === "string" && snap.snapshotId.length > 0, "createSnapshot", snap);
  const snaps = await Sandbox.listSnapshots({ ...opts, sandboxId: sbx.sandboxId }).nextItems();
  check(snaps.some((s) => s.snapshotId === snap.snapshotId), "listSnapshots", snaps);
  const copy = await Sandbox.create(snap.snapshotId, { ...opts, timeoutMs: 60000 });
  try {
    r = await copy.commands.run("cat /home/user/sdk/a.txt");
    check(r.stdout === "hello", "from the snapshot", r.stdout);
  } finally {
    await copy.kill();
  }
  check(await Sandbox.deleteSnapshot(snap.snapshotId, opts) === true, "deleteSnapshot", false);
  check(await Sandbox.deleteSnapshot(snap.snapshotId, opts) === false, "deleted twice", true);
} finally {
  await sbx.kill();
}
check(!(await Sandbox.list({ ...opts, query: { metadata: { check: tag } } }).nextItems()).length,
      "killed", null);
console.log("e2b: ok");
