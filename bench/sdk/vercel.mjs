// npm: @vercel/sandbox@3.5.0
// bench/sdk/vercel.mjs FAKE MODE [N [C]]: the official Vercel Sandbox SDK's side of figure 7
// (the version spec/fakes/check/vercel.mjs checks the fake against): Sandbox.create ->
// runCommand("echo", ["hello"]) -> stdout() -> delete against bench/peer_fake.lua (FAKE: its
// JSON line, with the team and project). The SDK takes no base URL: its fetch is given one that
// rewrites the https://vercel.com/api prefix to the fake, as the check script does. The modes
// are bench/sdk/_modes.mjs's; bench/fig7.lua copies both beside a node_modules holding the SDK.
import { Sandbox } from "@vercel/sandbox";
import { run } from "./_modes.mjs";

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

await run("vercel", mode, nArg, cArg, {
  cycle, make: () => Sandbox.create(creds), remove: (s) => s.delete() });
