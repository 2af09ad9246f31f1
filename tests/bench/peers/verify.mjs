// Peer of the approval-verification benchmark on Node: SimpleWebAuthn's
// verifyAuthenticationResponse verifies the same assertions the gateway's verifier
// does (results/assertions.json, written by bench_verify), each from the JSON body,
// with user verification required. One Node process: one core for JavaScript
// (WebCrypto may use libuv's pool for the signature).
//
//   node verify.mjs results/assertions.json [seconds] > results/bench-verify-node.json
import { readFileSync } from "node:fs";
import { verifyAuthenticationResponse } from "@simplewebauthn/server";

const data = JSON.parse(readFileSync(process.argv[2], "utf8"));
const seconds = Number(process.argv[3] ?? 3);
const publicKey = new Uint8Array(Buffer.from(data.public_key_cose, "base64url"));
const cases = data.assertions.map((a) => ({ body: JSON.stringify(a.credential), challenge: a.challenge }));

async function once() {
  for (const c of cases) {
    const { verified } = await verifyAuthenticationResponse({
      response: JSON.parse(c.body),
      expectedChallenge: c.challenge,
      expectedOrigin: data.origin,
      expectedRPID: data.rp_id,
      credential: { id: data.credential_id, publicKey, counter: 0 },
      requireUserVerification: true,
    });
    if (!verified) throw new Error("a valid assertion was refused");
  }
  return cases.length;
}

await once(); // accepts every assertion before it is timed
let n = 0;
const start = performance.now();
while (performance.now() - start < seconds * 1000) n += await once();
const perSecond = n / ((performance.now() - start) / 1000);
const version = JSON.parse(
  readFileSync(new URL("./node_modules/@simplewebauthn/server/package.json", import.meta.url), "utf8"),
).version;
console.log(
  JSON.stringify(
    {
      benchmark: "approval-verification-peers",
      language: `Node ${process.versions.node}`,
      seconds_each: seconds,
      per_second: { simplewebauthn: perSecond },
      versions: { simplewebauthn: version },
    },
    null,
    2,
  ),
);
