// bench/sdk/_modes.mjs: the modes every SDK script of figure 7 runs, with the same output as
// bench/peers.lua (sandlot's side). A script gives its cycle (create -> exec `echo hello` ->
// destroy) and, for `handles`, how to make a sandbox and remove it. CPU is
// process.cpuUsage() (getrusage: every thread) over the timed part only. bench/fig7.lua copies
// this file beside the scripts.
//   seq N      N cycles one after another       prints: seconds cpu_seconds
//   conc N C   N cycles, C in flight            prints: seconds cpu_seconds
//   handles N  N sandboxes made and kept        prints: peak_rss_kib rss_kib (then removed)
//   oneshot    one cycle
export async function run(name, mode, nArg, cArg, { cycle, make, remove }) {
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
    const made = [];
    for (let i = 0; i < n; i++) made.push(await make());
    console.log(`${process.resourceUsage().maxRSS} ${Math.round(process.memoryUsage().rss / 1024)}`);
    for (const s of made) await remove(s);
  } else {
    throw new Error(`usage: node ${name}.mjs FAKE_JSON seq|conc|handles|oneshot [N [C]]`);
  }
  // ended here: something in some SDKs keeps Node's event loop alive for tens of seconds
  // after the last call (figure 7's one-shot time is the cycle's, not that wait's)
  process.exit(0);
}
