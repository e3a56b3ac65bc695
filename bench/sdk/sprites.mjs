// npm: @fly/sprites@0.1.0 undici@6.21.0
// bench/sdk/sprites.mjs FAKE MODE [N [C]]: the official Sprites SDK's side of figure 7 (the
// version spec/fakes/check/sprites.mjs checks the fake against): createSprite ->
// execFile("echo", ["hello"]) -> deleteSprite against bench/peer_fake.lua (FAKE: its JSON
// line). execFile is the SDK's own exec, over the WebSocket (on a Node without a global one,
// undici's stands in, as in the check script); its execFileHTTP cannot be used here, since it
// needs each frame to arrive in a read of its own and a canned answer comes all at once.
// Each sprite gets a name of its own, as sandlot's provider gives one. The modes are
// bench/sdk/_modes.mjs's; bench/fig7.lua copies both beside a node_modules holding the SDK.
if (!globalThis.WebSocket) globalThis.WebSocket = (await import("undici")).WebSocket;
const { SpritesClient } = await import("@fly/sprites");
const { run } = await import("./_modes.mjs");

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

await run("sprites", mode, nArg, cArg, {
  cycle,
  make: async () => { const name = fresh(); await client.createSprite(name); return name; },
  remove: (name) => client.deleteSprite(name) });
