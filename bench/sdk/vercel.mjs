// npm: @vercel/sandbox@3.5.0
// bench/sdk/vercel.mjs FAKE MODE [N [C]]: the official Vercel Sandbox SDK's side of figure 7
// (the version spec/fakes/check/vercel.mjs checks the fake against): Sandbox.create ->
// runCommand("echo", ["hello"]) -> stdout() -> delete against bench/peer_fake.lua (FAKE: its
// JSON line, with the team and project). The SDK takes no base URL: its fetch is given one that
// rewrites the https://vercel.com/api prefix to the fake, as the check script does. The same
// modes and output as bench/peers.lua; CPU is process.cpuUsage() (getrusage: every thread)
// over the timed part. bench/run.lua copies it beside a node_modules holding the SDK.
import { Sandbox } from "@vercel/sandbox";

const [fakeJson, mode, nArg, cArg] = process.argv.slice(2);
const fake = JSON.parse(fakeJson);
const PREFIX = "https://vercel.com/api";
const rewrite = (input, init = {}) => {
  const u = String(input);
  if (!u.startsWith(PREFIX)) throw new Error("the SDK called " + u);
  const { dispatcher, ...rest } = init;        // the SDK's undici agent is not Node's
  return fetch(fake.url + u.slice(PREFIX.length), rest);
};
const creds = { token: fake.token, teamId: fake.team, projectId: fake.project, fetch: rewrite };

async function cycle() {
  const sbx = await Sandbox.create(creds);
  const r = await sbx.runCommand("echo", ["hello"]);
  const out = await r.stdout();
  if (r.exitCode !== 0 || out !== "hello\n") {
    throw new Error(`exec: exit ${r.exitCode}, stdout ${JSON.stringify(out)}`);
  }
  await sbx.delete();
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
  for (let i = 0; i < n; i++) sbs.push(await Sandbox.create(creds));
  console.log(`${process.resourceUsage().maxRSS} ${Math.round(process.memoryUsage().rss / 1024)}`);
  for (const s of sbs) await s.delete();
} else {
  throw new Error("usage: node vercel.mjs FAKE_JSON seq|conc|handles|oneshot [N [C]]");
}
process.exit(0);
