// fake: kubernetes
// npm: @kubernetes/client-node@2.0.1
// node: 22.19.0
// spec/fakes/check/kubernetes.mjs: drives the official @kubernetes/client-node (2.0.1, the
// newest on npm on 2026-12-02; its undici 8 needs Node >= 22.19.0, hence the `node:` line)
// against the Kubernetes fake (spec/fakes/kubernetes.lua), with the calls the provider
// (providers/kubernetes.lua) makes: CoreV1Api createNamespacedPod with a pod shaped like the
// provider's pod_body -> readNamespacedPod until Running -> listNamespacedPod by labelSelector,
// paged with limit/continue -> exec through the SDK's Exec class over WebSocket (stdout,
// stderr, the channel-3 Status: Success, and NonZeroExitCode with the ExitCode cause; stdin
// ended by v5's close frame) -> deleteNamespacedPod with gracePeriodSeconds 0 -> a missing pod
// as ApiException 404 -> a wrong token as 401, for REST and for exec. Exits non-zero on any
// mismatch; run.lua also fails the run when the fake's rejected() lists any request.
// `make check-fakes` (spec/fakes/check/run.lua) runs it as `node kubernetes.mjs URL TOKEN`
// beside a node_modules holding the SDK.
import { createRequire } from 'node:module'
import path from 'node:path'
import { PassThrough, Readable } from 'node:stream'

const require = createRequire(process.env.NODE_PATH ? path.join(process.env.NODE_PATH, 'x.js')
                                                   : import.meta.url)
const k8s = require('@kubernetes/client-node')

const [url, token] = process.argv.slice(2)
if (!url || !token) {
  console.error('usage: node kubernetes.mjs URL TOKEN')
  process.exit(2)
}
const NS = 'default'

function check(cond, what) {
  if (!cond) throw new Error('check failed: ' + what)
  console.log('ok  ' + what)
}

// 2.x refuses an http:// server unless skipTLSVerify is set (config.js createDispatcherOptions:
// "HTTP protocol is not allowed when skipTLSVerify is not set or false")
function config(tok) {
  const kc = new k8s.KubeConfig()
  kc.loadFromOptions({
    clusters: [{ name: 'fake', server: url, skipTLSVerify: url.startsWith('http:') }],
    users: [{ name: 'u', token: tok }],
    contexts: [{ name: 'fake', cluster: 'fake', user: 'u', namespace: NS }],
    currentContext: 'fake',
  })
  return kc
}

// the provider's pod_body: managed-by label, its labels note, sleep infinity in /work
function podBody(name, extraLabels) {
  return {
    apiVersion: 'v1', kind: 'Pod',
    metadata: { name, labels: { 'app.kubernetes.io/managed-by': 'sandlot', ...extraLabels },
                annotations: { 'sandlot.dev/labels': JSON.stringify(extraLabels) } },
    spec: {
      restartPolicy: 'Never', terminationGracePeriodSeconds: 0,
      automountServiceAccountToken: false, activeDeadlineSeconds: 600,
      containers: [{ name: 'main', image: 'debian:bookworm-slim', command: ['sleep', 'infinity'],
                     workingDir: '/work', env: [{ name: 'SDK_A', value: 'from the pod' }],
                     resources: { limits: { cpu: '1', memory: '512Mi' } } }],
    },
  }
}

async function untilRunning(api, name) {
  for (let i = 0; i < 200; i++) {
    const p = await api.readNamespacedPod({ name, namespace: NS })
    const cs = (p.status && p.status.containerStatuses || [])[0]
    if (p.status && p.status.phase === 'Running' && cs && cs.state && cs.state.running) return p
    await new Promise((res) => setTimeout(res, 100))
  }
  throw new Error('pod ' + name + ' not Running')
}

// One exec through the SDK's Exec class; resolves {stdout, stderr, status, protocol}.
async function run(kc, pod, command, stdinData) {
  const out = new PassThrough()
  const err = new PassThrough()
  const chunks = { out: [], err: [] }
  out.on('data', (d) => chunks.out.push(d))
  err.on('data', (d) => chunks.err.push(d))
  const stdin = stdinData === undefined ? null : Readable.from([Buffer.from(stdinData)])
  let protocol
  const status = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('exec gave no status in 30 s')), 30000)
    new k8s.Exec(kc).exec(NS, pod, 'main', command, out, err, stdin, false, (st) => {
      clearTimeout(timer)
      resolve(st)
    }).then((ws) => {
      protocol = ws.protocol
      ws.on('close', () => setTimeout(() => reject(new Error('closed without a status')), 50))
    }, (e) => { clearTimeout(timer); reject(e) })
  })
  await new Promise((res) => setImmediate(res))
  return { stdout: Buffer.concat(chunks.out).toString(),
           stderr: Buffer.concat(chunks.err).toString(), status, protocol }
}

async function apiError(p) {
  try {
    await p
  } catch (e) {
    return e
  }
  throw new Error('the call succeeded, an ApiException was expected')
}

async function main() {
  const kc = config(token)
  const api = kc.makeApiClient(k8s.CoreV1Api)
  const tag = 'sdk' + process.pid
  const names = [tag + '-a', tag + '-b', tag + '-c']
  const made = await api.createNamespacedPod({ namespace: NS,
                                               body: podBody(names[0], { 'sdk.check': tag }) })
  check(made.metadata.name === names[0] && made.metadata.uid && made.kind === 'Pod',
        'createNamespacedPod answers the pod')
  for (const n of names.slice(1)) {
    await api.createNamespacedPod({ namespace: NS, body: podBody(n, { 'sdk.check': tag }) })
  }
  await api.createNamespacedPod({ namespace: NS,
                                  body: podBody(tag + '-other', { 'sdk.check': 'x' }) })
  const dup = await apiError(api.createNamespacedPod({ namespace: NS,
                                                       body: podBody(names[0], {}) }))
  check(dup instanceof k8s.ApiException && dup.code === 409, 'a duplicate name is ApiException 409')
  const dupBody = typeof dup.body === 'string' ? JSON.parse(dup.body) : dup.body
  check(dupBody.kind === 'Status' && dupBody.reason === 'AlreadyExists' && dupBody.code === 409,
        'its body is a Status with reason AlreadyExists')

  const pod = await untilRunning(api, names[0])
  check(pod.status.containerStatuses[0].name === 'main' &&
        pod.status.containerStatuses[0].state.running.startedAt instanceof Date,
        'readNamespacedPod until Running (startedAt parses as a date)')
  check(pod.metadata.creationTimestamp instanceof Date, 'creationTimestamp parses as a date')

  const sel = 'app.kubernetes.io/managed-by=sandlot,sdk.check=' + tag
  const all = await api.listNamespacedPod({ namespace: NS, labelSelector: sel })
  check(all.kind === 'PodList' && all.items.map((p) => p.metadata.name).sort().join() ===
        names.join(), 'listNamespacedPod by labelSelector')
  const paged = []
  let cont
  let pages = 0
  do {
    const page = await api.listNamespacedPod({ namespace: NS, labelSelector: sel, limit: 1,
                                               _continue: cont })
    check(page.items.length === 1, 'a page of limit 1 holds one pod')
    paged.push(page.items[0].metadata.name)
    cont = page.metadata._continue
    pages++
  } while (cont && pages < 10)
  check(pages === 3 && paged.sort().join() === names.join(), 'limit/continue pages through all')

  const ok = await run(kc, names[0], ['sh', '-c', 'echo out; echo err >&2; pwd; echo "$SDK_A"'])
  check(ok.protocol === 'v5.channel.k8s.io', 'exec negotiates v5.channel.k8s.io (' +
        ok.protocol + ')')
  check(ok.stdout === 'out\n/work\nfrom the pod\n' && ok.stderr === 'err\n',
        'exec keeps stdout and stderr apart, in workingDir with the env: ' + JSON.stringify(ok))
  check(ok.status.status === 'Success', 'exec ends with a Success Status')
  const bad = await run(kc, names[0], ['sh', '-c', 'echo nope >&2; exit 7'])
  const cause = bad.status.details && bad.status.details.causes &&
                bad.status.details.causes.find((c) => c.reason === 'ExitCode')
  check(bad.status.status === 'Failure' && bad.status.reason === 'NonZeroExitCode' &&
        cause && cause.message === '7' && bad.stderr === 'nope\n',
        'a non-zero exit is a NonZeroExitCode Status with the ExitCode cause 7')
  const data = Buffer.alloc(200000)
  for (let i = 0; i < data.length; i++) data[i] = (i * 7) % 256
  const cat = await run(kc, names[0], ['sh', '-c', 'wc -c; echo done'], data)
  check(cat.stdout === '200000\ndone\n' && cat.status.status === 'Success',
        'stdin arrives whole and the v5 close frame ends it: ' + JSON.stringify(cat.stdout))
  const argv = await run(kc, names[0], ['printf', '%s|', 'a b', "it's", '$HOME', ''])
  check(argv.stdout === "a b|it's|$HOME||", 'command elements arrive as argv: ' + argv.stdout)

  const del = await api.deleteNamespacedPod({ name: names[0], namespace: NS,
                                              gracePeriodSeconds: 0 })
  check(del.metadata.name === names[0] && del.metadata.deletionTimestamp instanceof Date,
        'deleteNamespacedPod with gracePeriodSeconds 0 answers the pod being deleted')
  const gone = await apiError(api.readNamespacedPod({ name: names[0], namespace: NS }))
  check(gone instanceof k8s.ApiException && gone.code === 404, 'a missing pod is ApiException 404')
  const goneBody = typeof gone.body === 'string' ? JSON.parse(gone.body) : gone.body
  check(goneBody.kind === 'Status' && goneBody.status === 'Failure' &&
        goneBody.reason === 'NotFound' && goneBody.details.name === names[0] &&
        goneBody.details.kind === 'pods', 'its body is a NotFound Status naming the pod')
  const gone2 = await apiError(api.deleteNamespacedPod({ name: names[0], namespace: NS,
                                                         gracePeriodSeconds: 0 }))
  check(gone2.code === 404, 'deleting it again is 404')
  let execErr
  try {
    await run(kc, names[0], ['true'])
  } catch (e) { execErr = e }
  check(execErr && /404/.test(String(execErr.message)), 'exec into a missing pod fails with 404: ' +
        (execErr && execErr.message))

  const wrong = config(token + 'x')
  const unauth = await apiError(wrong.makeApiClient(k8s.CoreV1Api)
    .listNamespacedPod({ namespace: NS }))
  check(unauth instanceof k8s.ApiException && unauth.code === 401,
        'a wrong token is ApiException 401')
  let wsErr
  try {
    await run(wrong, names[1], ['true'])
  } catch (e) { wsErr = e }
  check(wsErr && /401/.test(String(wsErr.message)), 'exec with a wrong token fails with 401: ' +
        (wsErr && wsErr.message))

  for (const n of [...names.slice(1), tag + '-other']) {
    await api.deleteNamespacedPod({ name: n, namespace: NS, gracePeriodSeconds: 0 })
  }
  const left = await api.listNamespacedPod({ namespace: NS, labelSelector: sel })
  check(left.items.length === 0, 'no pods left')
}

let failed = false
try {
  await main()
} catch (e) {
  failed = true
  console.error('FAILED: ' + (e && e.stack || e))
}
console.log(failed ? 'kubernetes SDK check: FAILED' : 'kubernetes SDK check: passed')
process.exit(failed ? 1 : 0)
