// npm: @fly/sprites@0.1.0 undici@6.21.0
// bench/sdk/sprites.mjs FAKE MODE [N [C]]: the official Sprites SDK's side of figure 7 (the
// version spec/fakes/check/sprites.mjs checks the fake against): createSprite ->
// execFile("echo", ["hello"]) -> deleteSprite against bench/peer_fake.lua (FAKE: its JSON
// line). execFile is the SDK's own exec, over the WebSocket (on a Node without a global one,
// undici's stands in, as in the check script); its execFileHTTP cannot be used here, since it
// needs each frame to arrive in a read of its own and a canned answer comes all at once.
// Each sprite gets a name of its own, as sandlot's provider gives one. The same modes and output as bench/peers.lua;
// CPU is process.cpuUsage() (getrusage: every thread) over the timed part. bench/run.lua
// copies it beside a node_modules holding the SDK.
if (!globalThis.WebSocket) globalThis.WebSocket = (await import("undici")).WebSocket;
const { SpritesClient } = await import("@fly/sprites");

const [fakeJson, mode, nArg, cArg] = process.argv.slice(2);
const fake = JSON.parse(fakeJson);
const client = new SpritesClient(fake.token, { baseURL: fake.url, timeout: 60000 });
let serial = 0;
const fresh = () => `bench-${process.pid}-${serial++}`;

async function cycle() {
  const name = fresh();
  const sprite = await client.createSprite(name);
  const r = await sprite.execFile("echo", ["hello"]);
  if (r.exitCode !== 0 || String(r.stdout) !== "hello\n") {
    throw new Error(`exec: exit ${r.exitCode}, stdout ${JSON.stringify(String(r.stdout))}`);
  }
  await client.deleteSprite(name);
}

const seconds = () => Number(process.hrtime.bigint()) / 1e9;
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };
const n = Number(nArg);

if (mode === "oneshot") {
  await cycle();
} else if (mode === "seq" || mode === "conc") {
  const c = mode === "conc" ? Number(cArg) : 1;
  const t0 = seconds(), c0 = cpu();
  let next = 0;
  async function worker() { while (next < n) { next++; await cycle(); } }
  await Promise.all(Array.from({ length: Math.min(c, n) }, worker));
  console.log(`${seconds() - t0} ${cpu() - c0}`);
} else if (mode === "handles") {
  const names = [];
  for (let i = 0; i < n; i++) {
    const name = fresh();
    await client.createSprite(name);
    names.push(name);
  }
  console.log(`${process.resourceUsage().maxRSS} ${Math.round(process.memoryUsage().rss / 1024)}`);
  for (const name of names) await client.deleteSprite(name);
} else {
  throw new Error("usage: node sprites.mjs FAKE_JSON seq|conc|handles|oneshot [N [C]]");
}
process.exit(0);
