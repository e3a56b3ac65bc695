// npm: e2b@2.51.0
// bench/sdk/e2b.mjs FAKE MODE [N [C]]: the official E2B SDK's side of figure 7 (the version
// spec/fakes/check/e2b.mjs checks the fake against): Sandbox.create -> commands.run("echo
// hello") -> kill against bench/peer_fake.lua (FAKE: its JSON line). The same modes and output
// as bench/peers.lua; CPU is process.cpuUsage() (getrusage: every thread) over the timed part.
// bench/run.lua copies it beside a node_modules holding the SDK and runs it with node.
import { Sandbox } from "e2b";

const [fakeJson, mode, nArg, cArg] = process.argv.slice(2);
const fake = JSON.parse(fakeJson);
const opts = { apiKey: fake.token, apiUrl: fake.url, sandboxUrl: fake.sandbox_url,
               requestTimeoutMs: 60000 };

async function cycle() {
  const sbx = await Sandbox.create(opts);
  const r = await sbx.commands.run("echo hello");
  if (r.exitCode !== 0 || r.stdout !== "hello\n") {
    throw new Error(`exec: exit ${r.exitCode}, stdout ${JSON.stringify(r.stdout)}`);
  }
  await sbx.kill();
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
  const sbs = [];
  for (let i = 0; i < n; i++) sbs.push(await Sandbox.create(opts));
  console.log(`${process.resourceUsage().maxRSS} ${Math.round(process.memoryUsage().rss / 1024)}`);
  for (const s of sbs) await s.kill();
} else {
  throw new Error("usage: node e2b.mjs FAKE_JSON seq|conc|handles|oneshot [N [C]]");
}
// ended here: something in the SDK keeps Node's event loop alive for tens of seconds after
// the last call (figure 7's one-shot time is the cycle's, not that wait's)
process.exit(0);
