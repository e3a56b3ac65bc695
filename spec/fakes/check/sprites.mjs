// fake: sprites
// npm: @fly/sprites@0.1.0 undici@6.21.0
// spec/fakes/check/sprites.mjs: the official Sprites SDK (the version sprites.md was checked
// against) against spec/fakes/sprites.lua: create -> get/list -> files -> HTTP exec ->
// WebSocket exec and spawn with stdin -> kill -> services -> checkpoints -> delete.
// Run by spec/fakes/check/run.lua as `node sprites.mjs URL TOKEN`. The SDK wants Node >= 24 for
// its global WebSocket; on an older Node, undici's (the same implementation) stands in.
// Exits non-zero on the first failure; run.lua also fails when the fake refused any request.
if (!globalThis.WebSocket) globalThis.WebSocket = (await import("undici")).WebSocket;
const { SpritesClient, ExecError } = await import("@fly/sprites");

const [url, token] = process.argv.slice(2);
if (!url || !token) throw new Error("usage: node sprites.mjs URL TOKEN");

function check(cond, what, got) {
  if (!cond) throw new Error(`${what}: got ${JSON.stringify(got)}`);
}

const client = new SpritesClient(token, { baseURL: url, timeout: 30000 });
const name = `sdk-${process.pid}`;
const sprite = await client.createSprite(name, {
  config: { ramMB: 2048, cpus: 2 }, environment: { SDK_A: "from create" }, labels: ["check"],
});
try {
  check(sprite.name === name, "name", sprite.name);
  const got = await client.getSprite(name);
  check(["cold", "warm", "running"].includes(got.status), "status", got.status);
  const list = await client.listSprites({ prefix: "sdk-" });
  check(list.sprites.some((s) => s.name === name), "listSprites", list.sprites.map((s) => s.name));
  let threw = null;
  try { await client.createSprite(name); } catch (e) { threw = e; }
  check(threw !== null, "a duplicate name is refused", String(threw));

  // files
  const fsys = sprite.filesystem("/home/sprite");
  await fsys.writeFile("dir/a.txt", "hello", { mode: 0o600 });
  check((await fsys.readFile("dir/a.txt", "utf8")) === "hello", "readFile", "");
  const names = await fsys.readdir("dir");
  check(names.length === 1 && names[0] === "a.txt", "readdir", names);
  const st = await fsys.stat("dir/a.txt");
  check(st.size === 5 && st.isFile(), "stat", st);
  await fsys.mkdir("made/deep", { recursive: true });
  const made = await fsys.readdir("made", { withFileTypes: true });  // stat of a directory
  check(made.length === 1 && made[0].isDirectory(), "mkdir", made);   // reads its first entry
  threw = null;
  try { await fsys.readFile("nope.txt"); } catch (e) { threw = e; }
  check(threw && threw.code === "ENOENT", "ENOENT", threw && threw.code);
  await fsys.rm("dir", { recursive: true });
  threw = null;
  try { await fsys.stat("dir"); } catch (e) { threw = e; }
  check(threw && threw.code === "ENOENT", "rm", threw && threw.code);

  // HTTP exec, with stdin. Its frames are the HTTP chunks, and Node's fetch hands on what
  // arrives together as one piece (the SDK warns that it cannot see coalesced frames): the
  // pauses keep each frame in a TCP segment of its own.
  let r = await sprite.execFileHTTP("sh", ["-c", "cat; sleep 0.2; echo out; sleep 0.2; " +
                                             "echo err >&2; sleep 0.2"],
                                    { cwd: "/tmp", input: "in-" });
  check(r.exitCode === 0 && r.stdout === "in-out\n" && r.stderr === "err\n", "execFileHTTP", r);
  threw = null;
  try { await sprite.execFileHTTP("sh", ["-c", "exit 3"]); } catch (e) { threw = e; }
  check(threw instanceof ExecError && threw.exitCode === 3, "HTTP exit 3", String(threw));

  // WebSocket exec and spawn
  r = await sprite.execFile("sh", ["-c", "echo ws $SDK_B; pwd"], { cwd: "/tmp",
                                                                    env: { SDK_B: "b" } });
  check(r.stdout === "ws b\n/tmp\n", "execFile", r);
  const cmd = sprite.spawn("cat", []);
  const chunks = [];
  cmd.stdout.on("data", (d) => chunks.push(Buffer.from(d)));
  await new Promise((res) => setTimeout(res, 200));
  cmd.stdin.write("through cat\n");
  cmd.stdin.end();
  const code = await cmd.wait();
  check(code === 0 && Buffer.concat(chunks).toString() === "through cat\n", "spawn cat",
        Buffer.concat(chunks).toString());
  const sleeper = sprite.spawn("sh", ["-c", "echo up; exec sleep 100"]);
  await new Promise((res) => sleeper.stdout.once("data", res));
  const sessions = await sprite.listSessions();
  const live = sessions.find((s) => s.isActive || s.is_active);
  check(live, "listSessions", sessions);
  const ks = await sprite.killSession(String(live.id), "TERM");
  if (ks && ks.processAll) await ks.processAll(() => {});
  const killed = await sleeper.wait();
  check(killed === 143, "killed exit code", killed);

  // services: the one HTTP service, its logs, stop and delete
  const svc = await sprite.createService("web", { cmd: "sh", args: ["-c", "echo svc; exec sleep 100"],
                                                  httpPort: 8080 });
  await svc.processAll(() => {});
  const svcs = await sprite.listServices();
  check(svcs.length === 1 && svcs[0].httpPort === 8080 && svcs[0].state.status === "running",
        "listServices", svcs);
  let seen = "";
  for (let i = 0; i < 50 && !seen.includes("svc"); i++) {
    const logs = await sprite.getServiceLogs("web", { lines: 10 });
    await logs.processAll((e) => { if (e.type === "stdout") seen += e.data; });
    if (!seen.includes("svc")) await new Promise((res) => setTimeout(res, 100));
  }
  check(seen === "svc\n", "getServiceLogs", seen);
  threw = null;
  try { await sprite.createService("api", { cmd: "true", httpPort: 9000 }); } catch (e) { threw = e; }
  check(threw && /conflict/i.test(String(threw)), "a second HTTP service", String(threw));
  const stop = await sprite.stopService("web");
  await stop.processAll(() => {});
  check((await sprite.getService("web")).state.status === "stopped", "stopService", "");
  await sprite.deleteService("web");
  check((await sprite.listServices()).length === 0, "deleteService", "");

  // checkpoints
  await fsys.writeFile("keep.txt", "before");
  const cs = await sprite.createCheckpoint("sdk check");
  await cs.processAll(() => {});
  const cks = await sprite.listCheckpoints();
  const ck = cks.find((c) => c.comment === "sdk check");
  check(ck, "listCheckpoints", cks);
  check((await sprite.getCheckpoint(ck.id)).id === ck.id, "getCheckpoint", ck.id);
  await fsys.writeFile("keep.txt", "after");
  const rs = await sprite.restoreCheckpoint(ck.id);
  await rs.processAll(() => {});
  check((await fsys.readFile("keep.txt", "utf8")) === "before", "restore", "");
} finally {
  await client.deleteSprite(name);
}
let gone = null;
try { await client.getSprite(name); } catch (e) { gone = e; }
check(gone !== null, "getSprite after delete", String(gone));
console.log("sprites: the SDK agrees with the fake");
