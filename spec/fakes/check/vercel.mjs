// fake: vercel
// npm: @vercel/sandbox@3.5.0
// spec/fakes/check/vercel.mjs: the official Vercel Sandbox SDK (the version vercel.md was
// checked against) against spec/fakes/vercel.lua: create -> commands (waiting, detached, logs,
// kill) -> files -> extend -> domain -> list by tag -> snapshot (which stops the session; the
// next call resumes it after the 410) -> create from the snapshot -> get -> stop -> delete.
// Run by spec/fakes/check/run.lua as `node vercel.mjs URL TOKEN`; the team and project come
// from GET URL/_fake/config. The SDK takes no base URL: a fetch of our own rewrites its
// https://vercel.com/api prefix to the fake, as the SDK's own tests do. Exits non-zero on the
// first failure; run.lua also fails when the fake refused any request the SDK made.
import { Sandbox } from "@vercel/sandbox";

const [url, token] = process.argv.slice(2);
if (!url || !token) throw new Error("usage: node vercel.mjs URL TOKEN");
const cfg = await (await fetch(url + "/_fake/config")).json();
const PREFIX = "https://vercel.com/api";
const seen = [];
const rewrite = (input, init = {}) => {
  const u = String(input);
  if (!u.startsWith(PREFIX)) throw new Error("the SDK called " + u);
  seen.push(`${init.method || "GET"} ${u.slice(PREFIX.length).split("?")[0]}`);
  const { dispatcher, ...rest } = init;        // the SDK's undici agent is not Node's
  return fetch(url + u.slice(PREFIX.length), rest);
};
const creds = { token, teamId: cfg.team, projectId: cfg.project, fetch: rewrite };

function check(cond, what, got) {
  if (!cond) throw new Error(`${what}: got ${JSON.stringify(got)}`);
}

const tag = `sdk-${process.pid}`;
const sbx = await Sandbox.create({ ...creds, ports: [3000], timeout: 600000,
                                   tags: { check: tag }, env: { SDK_A: "from create" } });
let copy;
try {
  check(typeof sbx.name === "string" && sbx.name.length > 0, "name", sbx.name);
  check(sbx.status === "running", "status", sbx.status);

  // commands: waiting (one NDJSON stream), output, env, cwd, exit codes
  let r = await sbx.runCommand({ cmd: "sh", args: ["-c", 'echo "out $SDK_A $SDK_B"; echo err >&2; pwd'],
                                 env: { SDK_B: "b" }, cwd: "/tmp" });
  check(r.exitCode === 0, "exit code", r.exitCode);
  check(await r.stdout() === "out from create b\n/tmp\n", "stdout", await r.stdout());
  check(await r.stderr() === "err\n", "stderr", await r.stderr());
  r = await sbx.runCommand("sh", ["-c", "exit 3"]);
  check(r.exitCode === 3, "exit 3", r.exitCode);

  // detached: wait (?wait=true), logs, and a kill
  const d = await sbx.runCommand({ cmd: "sh", args: ["-c", "echo one; echo two"], detached: true });
  const done = await d.wait();
  check(done.exitCode === 0, "detached exit", done.exitCode);
  check(await d.stdout() === "one\ntwo\n", "logs", await d.stdout());
  const long = await sbx.runCommand({ cmd: "sleep", args: ["30"], detached: true });
  await long.kill("SIGKILL");
  const killed = await long.wait();
  check(killed.exitCode !== 0, "killed", killed.exitCode);

  // files: a relative and an absolute path in one tar, read back, mkdir, a missing file
  await sbx.writeFiles([{ path: "sdk/a.txt", content: Buffer.from("hello") },
                        { path: "/tmp/sdk/b.bin", content: Buffer.from([0, 1, 2, 255]),
                          mode: 0o755 }]);
  const a = await sbx.readFileToBuffer({ path: "sdk/a.txt" });
  check(a && a.toString() === "hello", "read relative", a && a.toString());
  const b = await sbx.readFileToBuffer({ path: "/tmp/sdk/b.bin" });
  check(b && b.length === 4 && b[3] === 255, "read bytes", b && [...b]);
  check(await sbx.readFileToBuffer({ path: "/nope" }) === null, "missing file", null);
  await sbx.mkDir("/vercel/sandbox/sdk/dir");
  r = await sbx.runCommand("sh", ["-c", "cat /vercel/sandbox/sdk/a.txt; test -d sdk/dir && test -x /tmp/sdk/b.bin && echo ok"]);
  check(await r.stdout() === "hellook\n", "files seen by commands", await r.stdout());

  // lifetime, routes, list by tag
  await sbx.extendTimeout(60000);
  check(sbx.domain(3000).endsWith(".vercel.run"), "domain", sbx.domain(3000));
  const found = await Sandbox.list({ ...creds, tags: { check: tag } });
  check(found.sandboxes.length === 1 && found.sandboxes[0].name === sbx.name, "list", found.sandboxes);

  // snapshot: the session stops; the next command gets a 410 and the SDK resumes
  const snap = await sbx.snapshot();
  check(typeof snap.snapshotId === "string", "snapshot", snap.snapshotId);
  r = await sbx.runCommand("cat", ["sdk/a.txt"]);
  check(await r.stdout() === "hello", "after the snapshot (resumed)", await r.stdout());
  check(seen.filter((s) => s.startsWith("GET /v2/sandboxes/") && !s.includes("/sessions/")).length >= 1,
        "resume", seen);
  copy = await Sandbox.create({ ...creds, source: { type: "snapshot", snapshotId: snap.snapshotId } });
  r = await copy.runCommand("cat", ["sdk/a.txt"]);
  check(await r.stdout() === "hello", "from the snapshot", await r.stdout());

  const again = await Sandbox.get({ ...creds, name: sbx.name, resume: true });
  r = await again.runCommand("echo", ["again"]);
  check(await r.stdout() === "again\n", "get", await r.stdout());
  await again.stop();
} finally {
  await sbx.delete();
  if (copy) await copy.delete();
}
const left = await Sandbox.list({ ...creds, tags: { check: tag } });
check(left.sandboxes.length === 0, "deleted", left.sandboxes);
console.log("vercel: ok");
